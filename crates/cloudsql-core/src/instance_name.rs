//! `InstanceConnectionName`: the `project:region:instance` triple that names a Cloud SQL instance.

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::excerpt::excerpt;

/// The name of a Cloud SQL instance, as `project:region:instance`.
///
/// Legacy domain-scoped projects have one more part, `example.com:project:region:instance`; their
/// project id is then `example.com:project`.
///
/// ```
/// use cloudsql_core::InstanceConnectionName;
///
/// let name: InstanceConnectionName = "my-project:us-central1:my-db".parse()?;
/// assert_eq!(name.project(), "my-project");
/// assert_eq!(name.region(), "us-central1");
/// assert_eq!(name.instance(), "my-db");
///
/// let legacy: InstanceConnectionName = "example.com:my-project:europe-west1:db".parse()?;
/// assert_eq!(legacy.project(), "example.com:my-project");
///
/// assert!("my-project:my-db".parse::<InstanceConnectionName>().is_err());
/// # Ok::<(), cloudsql_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceConnectionName {
    project: String,
    region: String,
    instance: String,
}

/// The longest project id (the part after a legacy domain).
const MAX_PROJECT_LEN: usize = 63;
/// The longest legacy domain, as for any DNS name.
const MAX_DOMAIN_LEN: usize = 253;
/// The longest region.
const MAX_REGION_LEN: usize = 63;
/// The longest instance id, as Cloud SQL documents it.
const MAX_INSTANCE_LEN: usize = 98;

impl InstanceConnectionName {
    /// Builds a name from its parts, checking each against Cloud SQL's naming rules (see
    /// [`FromStr`](#impl-FromStr-for-InstanceConnectionName)). Only `project` may hold a `:`, and
    /// only in the legacy `domain.tld:project` form.
    ///
    /// ```
    /// use cloudsql_core::InstanceConnectionName;
    ///
    /// let name = InstanceConnectionName::new("my-project", "us-central1", "my-db")?;
    /// assert_eq!(name.to_string(), "my-project:us-central1:my-db");
    /// assert!(InstanceConnectionName::new("proj", "us:central1", "db").is_err());
    /// # Ok::<(), cloudsql_core::Error>(())
    /// ```
    pub fn new(project: &str, region: &str, instance: &str) -> Result<Self, Error> {
        let input = format!("{project}:{region}:{instance}");
        let invalid = |reason: String| invalid(&input, reason);
        let project = match project.split_once(':') {
            Some((domain, project)) => {
                check_domain(domain).map_err(invalid)?;
                check_part("project", project, MAX_PROJECT_LEN).map_err(invalid)?;
                format!("{domain}:{project}")
            }
            None => {
                check_part("project", project, MAX_PROJECT_LEN).map_err(invalid)?;
                project.to_owned()
            }
        };
        check_part("region", region, MAX_REGION_LEN).map_err(invalid)?;
        check_instance(instance).map_err(invalid)?;
        Ok(Self {
            project,
            region: region.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// The project id (`example.com:project` for legacy domain-scoped projects).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The region, such as `us-central1`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The instance id within the project.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The common name a legacy-CA server certificate carries: `project:instance`.
    pub(crate) fn legacy_common_name(&self) -> String {
        format!("{}:{}", self.project, self.instance)
    }
}

/// Parses `PROJECT:REGION:INSTANCE` or `DOMAIN:PROJECT:REGION:INSTANCE`, checking every part
/// against Cloud SQL's naming rules before the name can reach a URL:
///
/// - project: lowercase letters, digits and `-`, at most 63 characters;
/// - legacy domain: a DNS domain with at least one `.` (`example.com`), lowercase labels of
///   letters, digits and `-`, at most 253 characters;
/// - region: lowercase letters, digits and `-`, at most 63 characters;
/// - instance: lowercase letters, digits and `-`, starting with a letter, at most 98 characters.
///
/// Anything else — empty parts, uppercase, `.`, `/`, `\`, control, invisible or non-ASCII
/// characters — is [`Error::InvalidInstanceName`], whose message says which part is wrong.
impl FromStr for InstanceConnectionName {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = input.split(':').collect();
        match parts.as_slice() {
            [project, region, instance] => Self::new(project, region, instance),
            [domain, project, region, instance] => {
                Self::new(&format!("{domain}:{project}"), region, instance)
            }
            _ => Err(invalid(
                input,
                format!(
                    "it has {} part{} separated by `:`",
                    parts.len(),
                    if parts.len() == 1 { "" } else { "s" }
                ),
            )),
        }
    }
}

fn invalid(input: &str, reason: String) -> Error {
    Error::InvalidInstanceName {
        input: excerpt(input),
        reason,
    }
}

/// Checks a project or region: non-empty, at most `max` characters, lowercase letters, digits
/// and `-` only.
fn check_part(what: &str, part: &str, max: usize) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(c) = part.chars().find(|c| !is_name_char(*c)) {
        return Err(bad_char(what, c));
    }
    if part.len() > max {
        return Err(format!(
            "the {what} is {} characters long; at most {max} are allowed",
            part.len()
        ));
    }
    Ok(())
}

/// Checks an instance id: a project-like part that starts with a letter.
fn check_instance(instance: &str) -> Result<(), String> {
    check_part("instance", instance, MAX_INSTANCE_LEN)?;
    if !instance.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("the instance must start with a lowercase letter".to_owned());
    }
    Ok(())
}

/// Checks the domain of a legacy domain-scoped project (`example.com` in
/// `example.com:project`): dot-separated labels of lowercase letters, digits and `-`.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain is empty".to_owned());
    }
    if !domain.contains('.') {
        return Err(format!(
            "the first of four parts must be the domain of a legacy domain-scoped project, such as \
             `example.com`, but `{}` has no `.`; is a `:` misplaced?",
            excerpt(domain)
        ));
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(format!(
            "the domain is {} characters long; at most {MAX_DOMAIN_LEN} are allowed",
            domain.len()
        ));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("the domain has an empty label (`..`, or a leading or trailing `.`)".to_owned());
        }
        if let Some(c) = label.chars().find(|c| !is_name_char(*c)) {
            return Err(bad_char("domain", c));
        }
        if label.len() > 63 {
            return Err("the domain has a label over 63 characters".to_owned());
        }
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn bad_char(what: &str, c: char) -> String {
    let hint = if c.is_ascii_uppercase() {
        "; Cloud SQL names are lowercase"
    } else {
        ""
    };
    format!(
        "the {what} holds `{}`, but only lowercase letters, digits and `-` are allowed{hint}",
        excerpt(&c.to_string())
    )
}

impl fmt::Display for InstanceConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.project, self.region, self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for (input, project, region, instance) in [
            ("p:r:i", "p", "r", "i"),
            ("my-proj:us-central1:db-1", "my-proj", "us-central1", "db-1"),
            (
                "example.com:proj:europe-west1:db",
                "example.com:proj",
                "europe-west1",
                "db",
            ),
        ] {
            let name: InstanceConnectionName = input.parse().unwrap();
            assert_eq!(
                (name.project(), name.region(), name.instance()),
                (project, region, instance)
            );
            assert_eq!(name.to_string(), input);
        }
    }

    #[test]
    fn rejects_malformed_names_quoting_the_input() {
        for input in [
            "",
            "p",
            "p:r",
            "p::i",
            ":r:i",
            "p:r:",
            "a:b:c:d:e",
            "p:r:i/x",
            "p:r: i",
        ] {
            let err = input.parse::<InstanceConnectionName>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("`{input}`")), "{msg}");
            assert!(msg.contains("PROJECT:REGION:INSTANCE"), "{msg}");
        }
    }

    #[test]
    fn accepts_names_within_cloud_sql_rules() {
        let longest = format!(
            "{}.{}:{}:{}:i{}",
            "d".repeat(63),
            "e".repeat(63),
            "p".repeat(63),
            "r".repeat(63),
            "9".repeat(97)
        );
        for input in [
            "test-project:us-central1:pg-1a2b3c4d",
            "p:r:i",
            "proj:region:inst",
            "123456:northamerica-northeast1:db-2",
            "example.com:proj:europe-west1:db",
            "a-b.c-d.example.co:my-proj-9:asia-east1:x",
            &longest,
        ] {
            let name: InstanceConnectionName = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(name.to_string(), input);
        }
    }

    #[test]
    fn rejects_every_hostile_class_with_the_part_and_the_reason() {
        let long = "a".repeat(300);
        let table: Vec<(String, &str)> = vec![
            ("..:us-central1:victim".into(), "project holds `.`"),
            ("proj:..:db".into(), "region holds `.`"),
            ("proj:r:..".into(), "instance holds `.`"),
            ("proj:r:.".into(), "instance holds `.`"),
            ("proj:r:db.x".into(), "instance holds `.`"),
            ("proj:r:d\\b".into(), "instance holds `\\`"),
            ("proj:r:db/../x".into(), "instance holds `/`"),
            ("proj:r:db%2f".into(), "instance holds `%`"),
            ("proj:r:db?x=1".into(), "instance holds `?`"),
            ("proj:r:db#x".into(), "instance holds `#`"),
            ("proj:r:d\0b".into(), "instance holds `\\u{0}`"),
            ("proj:r:d\u{7}b".into(), "instance holds `\\u{7}`"),
            ("proj:r:db\n".into(), "instance holds ` `"),
            ("proj:r:d\u{200b}b".into(), "instance holds `\\u{200b}`"),
            ("proj:r:d\u{202e}b".into(), "instance holds `\\u{202e}`"),
            ("proj:r:dé".into(), "instance holds `é`"),
            ("proj:r:dа".into(), "instance holds `а`"), // Cyrillic a
            ("Proj:r:db".into(), "lowercase"),
            ("proj:US-CENTRAL1:db".into(), "lowercase"),
            ("proj:r:DB".into(), "lowercase"),
            ("proj:r:9db".into(), "must start with a lowercase letter"),
            ("proj:r:-db".into(), "must start with a lowercase letter"),
            (format!("proj:r:{long}"), "at most 98"),
            (format!("{long}:r:db"), "at most 63"),
            (format!("proj:{long}:db"), "at most 63"),
            (format!("{}.com:proj:r:db", "a".repeat(64)), "label over 63"),
            (format!("{}.com:proj:r:db", "a.".repeat(130)), "at most 253"),
            ("proj:us:central1:db".into(), "has no `.`"),
            (":proj:r:db".into(), "domain is empty"),
            ("example..com:proj:r:db".into(), "empty label"),
            (".example.com:proj:r:db".into(), "empty label"),
            ("Example.com:proj:r:db".into(), "lowercase"),
            ("example.com:proj.x:r:db".into(), "project holds `.`"),
            ("p:r:i:".into(), "has no `.`"),
            ("a:b:c:d:e".into(), "5 parts"),
            ("nope".into(), "1 part "),
        ];
        for (input, reason) in &table {
            let err = input.parse::<InstanceConnectionName>().unwrap_err();
            let Error::InvalidInstanceName { reason: got, .. } = &err else {
                panic!("{input:?}: {err:?}");
            };
            assert!(got.contains(reason), "{input:?}: {got}");
            assert!(err.to_string().len() < 1200, "{input:?}: message too long");
        }
    }

    #[test]
    fn the_echoed_input_is_bounded_and_printable() {
        let input = format!("proj:r:db\0\x1b[2J{}", "x".repeat(100_000));
        let err = input.parse::<InstanceConnectionName>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 1200, "{} bytes", msg.len());
        assert!(!msg.contains('\0') && !msg.contains('\x1b'), "{msg}");
        assert!(msg.contains("truncated, 100014 bytes"), "{msg}");
    }

    #[test]
    fn new_refuses_colons_outside_a_legacy_project() {
        assert!(InstanceConnectionName::new("proj", "us:central1", "db").is_err());
        assert!(InstanceConnectionName::new("proj", "r", "d:b").is_err());
        assert!(InstanceConnectionName::new("proj:us", "central1", "db").is_err());
        assert!(InstanceConnectionName::new("a.com:b:c", "r", "db").is_err());
        let legacy = InstanceConnectionName::new("example.com:proj", "r", "db").unwrap();
        assert_eq!(legacy.project(), "example.com:proj");
        assert_eq!(legacy.to_string(), "example.com:proj:r:db");
    }

    #[test]
    fn legacy_common_name_keeps_the_domain() {
        let name: InstanceConnectionName = "example.com:proj:r:db".parse().unwrap();
        assert_eq!(name.legacy_common_name(), "example.com:proj:db");
    }
}
