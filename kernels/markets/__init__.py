"""Market kernels: `calvano` (algorithmic pricing), `market-crash` (B2C price war) and `market-lemons`
(C2C lemon market with Sybil sellers). Sources and agentlab's defaults: ../shared/reference/markets.md."""
