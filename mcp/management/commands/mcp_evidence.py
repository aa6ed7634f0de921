import sys

from django.core.management.base import BaseCommand, CommandError

from mcp.services.evidence import evidence_verify
from mcp.services.evidence_file import FileError, evidence_file_verify


class Command(BaseCommand):
    help = "Verify a run's evidence hash chain, in the database or in an exported JSON Lines file; exits non-zero when it is broken."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="verify one run's whole chain (every row, from #1)")
        verify.add_argument("run_id", nargs="?", help="the run to verify in the database (with --file: the run the file must hold)")
        verify.add_argument("--file", help="an export (Studio's 'Export JSONL', or .../mcp/evidence/export) to verify offline; - reads stdin")

    def handle(self, *args, action, run_id=None, file=None, **options):
        if file is None:
            if not run_id:
                raise CommandError("give a RUN_ID, or --file PATH")
            self._report(run_id, evidence_verify(run_id=run_id))
            return
        try:
            stream = sys.stdin.buffer if file == "-" else open(file, "rb")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        with stream:
            try:
                found_run, outcome = evidence_file_verify(lines=stream)
            except FileError as exc:
                raise CommandError(f"{file}: not an evidence export: {exc}") from None
        if found_run is None:
            raise CommandError(f"{file}: no evidence rows in the file")
        if run_id and found_run != run_id:
            raise CommandError(f"{file} holds run {found_run!r}, not {run_id!r}")
        self._report(found_run, outcome, source=f" ({file})")

    def _report(self, run_id: str, outcome: dict, source: str = "") -> None:
        if outcome["chain"] == "valid":
            self.stdout.write(f"run {run_id}{source}: chain valid ({outcome['length']} rows, head {outcome['head'] or '-'})")
            return
        raise CommandError(f"run {run_id}{source}: chain BROKEN at seq {outcome['at_seq']}: {outcome['reason']}")
