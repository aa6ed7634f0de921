from django.core.management.base import BaseCommand, CommandError

from maestro import errors
from sessions_app.services import session_revoke, session_revoke_run, sessions_cleanup_expired


class Command(BaseCommand):
    help = "Run sessions: cleanup (what the Celery beat job does), revoke one session or a whole run."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("cleanup", help="delete expired sessions now")
        revoke = sub.add_parser("revoke", help="revoke one session (--sid) or every session of a run")
        revoke.add_argument("--run", required=True)
        revoke.add_argument("--sid")

    def handle(self, *args, action, **options):
        try:
            if action == "cleanup":
                removed = sessions_cleanup_expired()
                self.stdout.write(f"removed {removed} expired session(s)")
            elif action == "revoke" and options["sid"]:
                record = session_revoke(run_id=options["run"], sid=options["sid"])
                self.stdout.write(f"revoked session {record.sid} of run {record.run_id}")
            else:
                count = session_revoke_run(run_id=options["run"])
                self.stdout.write(f"revoked {count} session(s) of run {options['run']}")
        except errors.GatewayError as exc:
            raise CommandError(exc.message) from None
