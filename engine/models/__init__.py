"""Models: the litellm gateway, tier selection, prices, rate limits, the cost ledger, the embedded model."""
