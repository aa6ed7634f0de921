from django.core.management.base import BaseCommand, CommandError

from mcp.services.evidence import evidence_verify


class Command(BaseCommand):
    help = "Verify a run's evidence hash chain; exits non-zero when it is broken."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="verify one run's chain")
        verify.add_argument("run_id")

    def handle(self, *args, action, run_id, **options):
        outcome = evidence_verify(run_id=run_id)
        if outcome["chain"] == "valid":
            self.stdout.write(f"run {run_id}: chain valid ({outcome['length']} rows, head {outcome['head'] or '-'})")
            return
        raise CommandError(f"run {run_id}: chain BROKEN at seq {outcome['at_seq']}: {outcome['reason']}")
