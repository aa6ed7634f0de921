from django.db import migrations, models


class Migration(migrations.Migration):
    """Evidence of resource reads and prompt gets (the MCP endpoint): a `kind` per row, and room
    for a resource URI in `tool`. Existing rows are tools; widening a varchar rewrites nothing."""

    dependencies = [
        ("mcp", "0003_evidence_chains"),
    ]

    operations = [
        migrations.AddField(
            model_name="invocation",
            name="kind",
            field=models.CharField(
                choices=[("tool", "tool"), ("resource", "resource"), ("prompt", "prompt")],
                db_default="tool", default="tool", max_length=8,
            ),
        ),
        migrations.AlterField(model_name="invocation", name="tool", field=models.CharField(max_length=2048)),
    ]
