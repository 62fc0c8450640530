//! The Admin API's JSON shapes, as far as the connector reads them. Unknown fields are ignored.

use serde::{Deserialize, Serialize};

/// `GET …/instances/{instance}/connectSettings`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectSettings {
    pub(crate) region: Option<String>,
    pub(crate) database_version: Option<String>,
    #[serde(default)]
    pub(crate) ip_addresses: Vec<IpMapping>,
    pub(crate) server_ca_cert: Option<SslCert>,
    pub(crate) server_ca_mode: Option<String>,
    #[serde(default)]
    pub(crate) psc_enabled: bool,
    pub(crate) dns_name: Option<String>,
    #[serde(default)]
    pub(crate) dns_names: Vec<DnsNameMapping>,
    pub(crate) backend_type: Option<String>,
    #[serde(default)]
    pub(crate) mdx_protocol_support: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IpMapping {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) ip_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DnsNameMapping {
    pub(crate) name: String,
    pub(crate) connection_type: Option<String>,
    pub(crate) dns_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SslCert {
    pub(crate) cert: String,
}

/// `POST …/instances/{instance}:generateEphemeralCert` request body.
#[derive(Serialize)]
pub(crate) struct GenerateEphemeralCertRequest<'a> {
    pub(crate) public_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) access_token: Option<&'a str>,
}

/// `POST …/instances/{instance}:generateEphemeralCert` response body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateEphemeralCertResponse {
    pub(crate) ephemeral_cert: SslCert,
}

/// The error body Google APIs send with a failed status.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) message: Option<String>,
    pub(crate) status: Option<String>,
}

/// `GET …/dns/{name}:resolveConnectSettings` response body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResolveConnectSettings {
    pub(crate) connection_name: String,
}
