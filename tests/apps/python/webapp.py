"""A Flask service with four routes for connleak's Python tests: one leaks a
connection it opens itself, one closes it, two go through db.get_conn (one
leaks). Run under gunicorn: `gunicorn -w 2 webapp:app`."""
import os

import psycopg2
from flask import Flask

import db

app = Flask(__name__)
DSN = os.environ["APP_DSN"]
held = []


@app.route("/direct")
def direct():
    held.append(psycopg2.connect(DSN + " application_name=t_py_direct"))  # MARK:direct
    return "ok\n"


@app.route("/closing")
def closing():
    conn = psycopg2.connect(DSN + " application_name=t_py_closing")  # MARK:closing
    conn.close()
    return "ok\n"


@app.route("/audit")
def audit():
    held.append(db.get_conn("t_py_audit"))  # MARK:audit
    return "ok\n"


@app.route("/report")
def report():
    conn = db.get_conn("t_py_report")  # MARK:report
    conn.close()
    return "ok\n"
