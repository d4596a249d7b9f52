"""PostgreSQL for tests: a connection to any URL, and a database emptied to a bare schema."""

from __future__ import annotations


def pg_connect(url: str):
    import psycopg2

    return psycopg2.connect(url, connect_timeout=3)


def reset_pg(url: str) -> None:
    """Drop every table of the database at `url`: it starts from an empty public schema."""
    conn = pg_connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()
