"""The trigger layer: Azure Functions blueprints, one module per area. Thin by design."""
