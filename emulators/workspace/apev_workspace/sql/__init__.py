"""SQL warehouses, the Statement Execution API and the DuckDB engine behind them."""
