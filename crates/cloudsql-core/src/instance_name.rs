//! `InstanceConnectionName`: the `project:region:instance` triple that names a Cloud SQL instance.

use std::fmt;
use std::str::FromStr;

use crate::Error;

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

impl InstanceConnectionName {
    /// Builds a name from its parts, checking each is non-empty and free of `:` (except a
    /// legacy `domain:project` project id) and `/`.
    pub fn new(project: &str, region: &str, instance: &str) -> Result<Self, Error> {
        format!("{project}:{region}:{instance}").parse()
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

impl FromStr for InstanceConnectionName {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidInstanceName {
            input: input.to_owned(),
        };
        let parts: Vec<&str> = input.split(':').collect();
        let valid_part =
            |p: &&str| !p.is_empty() && !p.contains(['/', '?', '#', '%']) && !p.contains(char::is_whitespace);
        if !parts.iter().all(valid_part) {
            return Err(invalid());
        }
        match parts.as_slice() {
            [project, region, instance] => Ok(Self {
                project: (*project).to_owned(),
                region: (*region).to_owned(),
                instance: (*instance).to_owned(),
            }),
            [domain, project, region, instance] => Ok(Self {
                project: format!("{domain}:{project}"),
                region: (*region).to_owned(),
                instance: (*instance).to_owned(),
            }),
            _ => Err(invalid()),
        }
    }
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
    fn legacy_common_name_keeps_the_domain() {
        let name: InstanceConnectionName = "example.com:proj:r:db".parse().unwrap();
        assert_eq!(name.legacy_common_name(), "example.com:proj:db");
    }
}
