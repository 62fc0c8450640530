#!/usr/bin/env bash
# Creates the MariaDB/MySQL admin the tests use to create their own users and tables:
# cloudsql_admin / cloudsql-mysql-admin, reachable on 127.0.0.1:3306. Idempotent.
set -euo pipefail
mysql -u root --protocol=socket <<'SQL'
CREATE USER IF NOT EXISTS 'cloudsql_admin'@'%' IDENTIFIED BY 'cloudsql-mysql-admin';
CREATE USER IF NOT EXISTS 'cloudsql_admin'@'localhost' IDENTIFIED BY 'cloudsql-mysql-admin';
CREATE USER IF NOT EXISTS 'cloudsql_admin'@'127.0.0.1' IDENTIFIED BY 'cloudsql-mysql-admin';
GRANT ALL PRIVILEGES ON *.* TO 'cloudsql_admin'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'cloudsql_admin'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'cloudsql_admin'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS cloudsql_test;
SQL
echo "[mysql-test-user] cloudsql_admin ready on 127.0.0.1:3306"
