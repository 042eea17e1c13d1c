"""A shared helper: two routes reach the database through it."""
import os

import psycopg2

DSN = os.environ["APP_DSN"]


def get_conn(app_name):
    return psycopg2.connect(DSN + " application_name=" + app_name)  # MARK:get_conn
