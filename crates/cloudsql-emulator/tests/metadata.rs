//! The metadata server probed as google-auth (Python) and other Google client libraries probe
//! it: `Metadata-Flavor: Google` on every request (403 without) and on every answer, the
//! service account's directory, email, scopes, token and ID token, the project id and number.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudsql_emulator::Emulator;
use serde_json::Value;

const VM: &str = "vm@meta-project.iam.gserviceaccount.com";
const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

struct Probe {
    base: String,
    http: reqwest::Client,
}

impl Probe {
    fn new(emulator: &Emulator) -> Self {
        Self {
            base: format!("http://{}", emulator.metadata_host()),
            http: reqwest::Client::new(),
        }
    }

    /// GETs `path` with `Metadata-Flavor: Google`, as google-auth does, and checks the answer
    /// carries it too.
    async fn get(&self, path: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("metadata-flavor").unwrap(),
            "Google",
            "{path}"
        );
        response
    }

    async fn text(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }
}

#[tokio::test]
async fn google_auth_probes_are_answered_with_the_flavor_header() {
    let emulator = Emulator::start().await.unwrap();
    emulator.set_metadata_service_account(VM);
    let probe = Probe::new(&emulator);

    // google-auth's ping: `GET /` then `GET /computeMetadata/v1/`.
    let root = probe.get("/").await;
    assert_eq!(root.status(), 200);
    assert!(probe.text("/computeMetadata/v1/").await.contains("instance/"));

    // get_service_account_info: the recursive directory, as JSON.
    let info = probe
        .get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true")
        .await;
    assert_eq!(info.headers().get("content-type").unwrap(), "application/json");
    let info: Value = info.json().await.unwrap();
    assert_eq!(info["email"], VM);
    assert!(
        info["scopes"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .ends_with("cloud-platform")
    );
    assert!(
        probe
            .text("/computeMetadata/v1/instance/service-accounts/default/")
            .await
            .contains("token")
    );
    assert!(
        probe
            .text("/computeMetadata/v1/instance/service-accounts/")
            .await
            .contains(&format!("{VM}/"))
    );
    assert_eq!(
        probe
            .text("/computeMetadata/v1/instance/service-accounts/default/email")
            .await,
        VM
    );
    assert!(
        probe
            .text("/computeMetadata/v1/instance/service-accounts/default/scopes")
            .await
            .contains("cloud-platform")
    );

    // The token, for the scopes asked; it opens the Admin API.
    let token = probe
        .get(&format!(
            "/computeMetadata/v1/instance/service-accounts/default/token?scopes={ADMIN}"
        ))
        .await;
    assert_eq!(token.headers().get("content-type").unwrap(), "application/json");
    let token: Value = token.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 3000);
    let access = token["access_token"].as_str().unwrap();
    let settings = probe
        .http
        .get(format!(
            "{}/sql/v1beta4/projects/p/instances/i/connectSettings",
            emulator.admin_api_url()
        ))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    // Authorized (not 401); Cloud SQL answers an unknown project with 403 notAuthorized.
    assert_eq!(settings.status(), 403, "authorized, and no such project");

    // The same by the account's email.
    let by_email: Value = probe
        .get(&format!(
            "/computeMetadata/v1/instance/service-accounts/{VM}/token"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(by_email["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(
        probe
            .get("/computeMetadata/v1/instance/service-accounts/other@x.iam.gserviceaccount.com/email")
            .await
            .status(),
        404
    );

    // An ID token: a JWT for the audience asked, with the email in `format=full`.
    let jwt = probe
        .text(
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://app.example.com&format=full",
        )
        .await;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], "https://app.example.com");
    assert_eq!(claims["email"], VM);
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert!(!parts[2].is_empty());
    assert_eq!(
        probe
            .get("/computeMetadata/v1/instance/service-accounts/default/identity")
            .await
            .status(),
        400,
        "audience required"
    );

    // The project, from the service account unless set.
    assert_eq!(
        probe.text("/computeMetadata/v1/project/project-id").await,
        "meta-project"
    );
    let number = probe.text("/computeMetadata/v1/project/numeric-project-id").await;
    assert!(
        number.len() == 12 && number.bytes().all(|b| b.is_ascii_digit()),
        "{number}"
    );
    emulator.set_metadata_project_id("other-project");
    assert_eq!(
        probe.text("/computeMetadata/v1/project/project-id").await,
        "other-project"
    );
    assert_ne!(
        probe.text("/computeMetadata/v1/project/numeric-project-id").await,
        number
    );
    assert_eq!(
        probe.text("/computeMetadata/v1/universe/universe-domain").await,
        "googleapis.com"
    );
    assert_eq!(
        probe.get("/computeMetadata/v1/instance/zone-nope").await.status(),
        404
    );
}

#[tokio::test]
async fn requests_without_the_flavor_header_are_refused() {
    let emulator = Emulator::start().await.unwrap();
    emulator.set_metadata_service_account(VM);
    let http = reqwest::Client::new();
    for path in [
        "/computeMetadata/v1/",
        "/computeMetadata/v1/instance/service-accounts/default/",
        "/computeMetadata/v1/instance/service-accounts/default/token",
        "/computeMetadata/v1/instance/service-accounts/default/email",
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=x",
        "/computeMetadata/v1/project/project-id",
        "/computeMetadata/v1/project/numeric-project-id",
        "/computeMetadata/v1/no/such/path",
    ] {
        let url = format!("http://{}{path}", emulator.metadata_host());
        let bare = http.get(&url).send().await.unwrap();
        assert_eq!(bare.status(), 403, "{path}");
        assert_eq!(bare.headers().get("metadata-flavor").unwrap(), "Google");
        let wrong = http
            .get(&url)
            .header("Metadata-Flavor", "Gogle")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{path}");
    }
    assert_eq!(
        emulator.token_requests(),
        0,
        "refused before any token was issued"
    );
}

#[tokio::test]
async fn a_vm_without_a_service_account_answers_404() {
    let emulator = Emulator::start().await.unwrap();
    let probe = Probe::new(&emulator);
    for item in ["token", "email", "identity?audience=x", ""] {
        let path = format!("/computeMetadata/v1/instance/service-accounts/default/{item}");
        assert_eq!(probe.get(&path).await.status(), 404, "{path}");
    }
    assert_eq!(
        probe.text("/computeMetadata/v1/project/project-id").await,
        "emulated-project"
    );
}
