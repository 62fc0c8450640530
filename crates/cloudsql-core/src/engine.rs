//! Database engines, recognised from an instance's `databaseVersion`, and IAM user-name rules.

use std::fmt;

/// The database engine an instance runs, or a driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// PostgreSQL (`POSTGRES_*`).
    Postgres,
    /// MySQL (`MYSQL_*`).
    MySql,
    /// SQL Server (`SQLSERVER_*`).
    SqlServer,
}

impl Engine {
    /// Recognises the engine from a `databaseVersion` such as `POSTGRES_15` or `MYSQL_8_0`.
    ///
    /// ```
    /// use cloudsql_core::Engine;
    /// assert_eq!(Engine::from_database_version("POSTGRES_16"), Some(Engine::Postgres));
    /// assert_eq!(Engine::from_database_version("SQLSERVER_2019_STANDARD"), Some(Engine::SqlServer));
    /// assert_eq!(Engine::from_database_version("ORACLE_1"), None);
    /// ```
    pub fn from_database_version(version: &str) -> Option<Engine> {
        if version.starts_with("POSTGRES") {
            Some(Engine::Postgres)
        } else if version.starts_with("MYSQL") {
            Some(Engine::MySql)
        } else if version.starts_with("SQLSERVER") {
            Some(Engine::SqlServer)
        } else {
            None
        }
    }

    /// Whether automatic IAM database authentication exists for this engine.
    pub fn supports_iam_authn(self) -> bool {
        matches!(self, Engine::Postgres | Engine::MySql)
    }

    /// The database user name Cloud SQL gives an IAM principal (a user or service-account email).
    ///
    /// PostgreSQL drops the `.gserviceaccount.com` suffix of a service account; MySQL keeps only the
    /// part before `@`. SQL Server has no IAM database users, so the principal is returned as is.
    ///
    /// ```
    /// use cloudsql_core::Engine;
    /// let sa = "app@my-project.iam.gserviceaccount.com";
    /// assert_eq!(Engine::Postgres.iam_user_name(sa), "app@my-project.iam");
    /// assert_eq!(Engine::MySql.iam_user_name(sa), "app");
    /// assert_eq!(Engine::Postgres.iam_user_name("alice@example.com"), "alice@example.com");
    /// ```
    pub fn iam_user_name(self, principal: &str) -> String {
        match self {
            Engine::Postgres => principal
                .strip_suffix(".gserviceaccount.com")
                .unwrap_or(principal)
                .to_owned(),
            Engine::MySql => principal
                .split_once('@')
                .map_or(principal, |(user, _)| user)
                .to_owned(),
            Engine::SqlServer => principal.to_owned(),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Postgres => "PostgreSQL",
            Engine::MySql => "MySQL",
            Engine::SqlServer => "SQL Server",
        })
    }
}
