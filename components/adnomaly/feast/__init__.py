"""The pipeline's features as Feast sees them: Feast's Redis layout (`layout`) and a generated Feast repository
(`repo`). Pure; imports no feast (Feast runs in its own environment, `adnomaly.services.feast`)."""
