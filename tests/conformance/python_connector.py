"""Google's own Cloud SQL Python Connector (pg8000, pymysql) against the cloudsql-rs emulator.

Run by tests/conformance_python.rs; prints one JSON object with what happened. Any exception
that is not an expected refusal propagates and fails the test.
"""
import json
import os

from google.cloud.sql.connector import Connector, IPTypes

endpoint = os.environ["CLOUDSQL_ADMIN_API"]
instance = os.environ["CLOUDSQL_INSTANCE"]
results = {}


def query(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    conn.close()
    return list(row)


with Connector(sqladmin_api_endpoint=endpoint, ip_type=IPTypes.PUBLIC) as connector:
    conn = connector.connect(
        instance, "pg8000", user=os.environ["PG_USER"], password=os.environ["PG_PASSWORD"], db="postgres"
    )
    results["password_login"] = query(conn, "SELECT current_user::text, 1")
    try:
        connector.connect(instance, "pg8000", user=os.environ["PG_USER"], password="wrong", db="postgres")
        results["wrong_password"] = "connected"
    except Exception as e:  # pg8000 raises its own DatabaseError
        results["wrong_password"] = str(e)
    try:
        connector.connect(instance, "pg8000", user=os.environ["IAM_USER"], db="postgres")
        results["iam_user_without_iam"] = "connected"
    except Exception as e:
        results["iam_user_without_iam"] = str(e)

with Connector(sqladmin_api_endpoint=endpoint, enable_iam_auth=True) as connector:
    conn = connector.connect(instance, "pg8000", user=os.environ["IAM_USER"], db="postgres")
    results["iam_login"] = query(conn, "SELECT current_user::text, 1")

mysql_instance = os.environ.get("CLOUDSQL_MYSQL_INSTANCE")
if mysql_instance:
    with Connector(sqladmin_api_endpoint=endpoint) as connector:
        conn = connector.connect(
            mysql_instance, "pymysql", user=os.environ["MY_USER"], password=os.environ["MY_PASSWORD"],
            db=os.environ["MY_DB"],
        )
        results["mysql_password_login"] = query(conn, "SELECT CURRENT_USER(), 1")
        try:
            connector.connect(mysql_instance, "pymysql", user=os.environ["MY_IAM_USER"], db=os.environ["MY_DB"])
            results["mysql_iam_user_without_iam"] = "connected"
        except Exception as e:
            results["mysql_iam_user_without_iam"] = str(e)
    with Connector(sqladmin_api_endpoint=endpoint, enable_iam_auth=True) as connector:
        conn = connector.connect(mysql_instance, "pymysql", user=os.environ["MY_IAM_USER"], db=os.environ["MY_DB"])
        results["mysql_iam_login"] = query(conn, "SELECT CURRENT_USER(), 1")

print(json.dumps(results))
