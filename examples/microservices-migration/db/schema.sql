-- TimescaleDB stand-in: the tables that exist before the migration.
CREATE TABLE tickers (symbol text PRIMARY KEY, name text NOT NULL);
CREATE TABLE ticker_metadata (
  symbol text PRIMARY KEY REFERENCES tickers(symbol),
  sector text NOT NULL,
  market_cap bigint NOT NULL
);
INSERT INTO tickers VALUES ('AAPL', 'Apple Inc.'), ('TSLA', 'Tesla Inc.'), ('NVDA', 'NVIDIA Corp.');
INSERT INTO ticker_metadata VALUES
  ('AAPL', 'Technology', 3400000000000),
  ('TSLA', 'Consumer Cyclical', 1100000000000),
  ('NVDA', 'Technology', 4100000000000);
