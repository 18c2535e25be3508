"""Task control: revoke, terminate and retry Celery tasks by query, with a dry run -- opt-in,
role-checked, audited (docs/control.md).

The security model in one paragraph: the web UI and its API stay read-only and hold no broker
credentials. ``celery-monitor control`` is a separate process, off unless started and configured
(``CONTROL_SECRET``; the UI needs ``CONTROL_URL`` too). The UI checks the user's role (viewer or
operator, from ``UI_USERS_FILE``) on every request and forwards an operator's request signed
with HMAC-SHA256 over a one-time nonce; the control service checks the signature, the nonce and
the role again, resolves the selection itself from ClickHouse, writes the request to the audit
topic (acknowledged, or nothing is done), acts through Celery's own API (``app.control.revoke``,
``app.send_task``) and writes the result per task.

Modules: ``rules`` (pure: eligibility, argument parsing), ``signing`` (HMAC, nonces), ``audit``
(rows, producer), ``service`` (the HTTP service), ``client`` (the UI's side).
"""
