from django.core.management.base import BaseCommand, CommandError

from maestro import errors
from sessions_app.apikeys import apikey_create, apikey_revoke
from sessions_app.models import ApiKey


class Command(BaseCommand):
    help = "Operator API keys: create (prints the key once), list, revoke."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key and print it once")
        create.add_argument("--name", required=True)
        create.add_argument("--scopes", required=True, help="comma-separated: admin:mcp, mcp:read, mcp:sessions")
        create.add_argument("--if-missing", action="store_true", help="do nothing (exit 0) when the name exists")
        sub.add_parser("list", help="list keys (never the keys themselves)")
        revoke = sub.add_parser("revoke", help="revoke a key by name")
        revoke.add_argument("--name", required=True)

    def handle(self, *args, action, **options):
        try:
            if action == "create":
                if options["if_missing"] and ApiKey.objects.filter(name=options["name"]).exists():
                    self.stdout.write(f"API key {options['name']!r} exists; not creating another")
                    return
                row, key = apikey_create(name=options["name"], scopes=options["scopes"].split(","))
                self.stdout.write(f"created API key {row.name!r} with scopes {','.join(row.scopes)}")
                self.stdout.write("store it now, it is not shown again:")
                self.stdout.write(key)
            elif action == "list":
                for row in ApiKey.objects.all():
                    state = "revoked" if row.revoked else "active"
                    used = row.last_used_at.isoformat() if row.last_used_at else "never"
                    self.stdout.write(f"{row.name}\tmcpk_{row.prefix}_…\t{','.join(row.scopes)}\t{state}\tlast used {used}")
            elif action == "revoke":
                row = apikey_revoke(name=options["name"])
                self.stdout.write(f"revoked API key {row.name!r}")
        except errors.GatewayError as exc:
            raise CommandError(exc.message) from None
