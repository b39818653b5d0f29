"""Market kernels: `calvano` (algorithmic pricing), `market-crash` (B2C price war) and `market-lemons`
(C2C lemon market with Sybil sellers). Sources: Calvano et al. 2020; Agent Bazaar (Karten, Crow, Jin 2026,
arXiv 2605.17698); Akerlof 1970; the formulas and agentlab's defaults are in each kernel's docstring."""
