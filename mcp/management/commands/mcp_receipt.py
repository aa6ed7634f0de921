import json

from django.core.management.base import BaseCommand, CommandError

from mcp.receipts import receipt_verify


class Command(BaseCommand):
    help = "Print a policy receipt and whether its signature holds; exits non-zero when it does not."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="verify one receipt (the x-ig-policy-receipt value)")
        verify.add_argument("receipt")

    def handle(self, *args, action, receipt, **options):
        claims, valid = receipt_verify(receipt=receipt)
        if claims is None:
            raise CommandError("not a Maestro policy receipt (expected mr1.<payload>.<signature>)")
        self.stdout.write(json.dumps(claims, indent=2, sort_keys=True))
        if not valid:
            raise CommandError("signature INVALID: this receipt was not issued with this gateway's key, or was altered")
        self.stdout.write("signature valid")
