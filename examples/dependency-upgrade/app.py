"""Market-data API (seed 004's market-data.py, cut down to what the rollback needs).

Written against Flask 2.3 and pandas 1.5: it uses `flask.escape` (deprecated
in Flask 2.3, removed in Flask 3.0) for the pair labels, `werkzeug.urls.url_quote`
(removed in Werkzeug 3.0) for the news links and `DataFrame.append` (deprecated
in pandas 1.4, removed in pandas 2.0) for the analysis. Upgrading to Flask 3.x,
pandas 2.x and NumPy 2.x therefore breaks every endpoint but /health: the seed's
"multiple endpoints failing" case.
"""

import os

import flask
import numpy as np
import pandas as pd
from flask import Flask, jsonify

app = Flask(__name__)

PRICES = {"EURUSD": 1.0842, "GBPUSD": 1.2671, "USDJPY": 149.32}
HISTORY = {
    "EURUSD": [1.0811, 1.0825, 1.0833, 1.0829, 1.0842],
    "GBPUSD": [1.2630, 1.2655, 1.2649, 1.2660, 1.2671],
    "USDJPY": [148.90, 149.05, 149.21, 149.40, 149.32],
}


def label(pair):
    """The pair as shown to the frontend, HTML-escaped (a Flask 2.x API)."""
    return str(flask.escape(pair.upper()))


def known(pair):
    pair = pair.upper()
    if pair not in PRICES:
        flask.abort(404, f"unknown pair {pair}")
    return pair


@app.get("/health")
def health():
    from importlib.metadata import version

    return jsonify(
        status="healthy",
        flask=version("flask"),
        werkzeug=version("werkzeug"),
        pandas=pd.__version__,
        numpy=np.__version__,
    )


@app.get("/api/price/<pair>")
def price(pair):
    pair = known(pair)
    return jsonify(pair=label(pair), price=PRICES[pair])


@app.get("/api/analysis/<pair>")
def analysis(pair):
    pair = known(pair)
    frame = pd.DataFrame({"close": HISTORY[pair]})
    # The live price as the newest close (DataFrame.append: gone in pandas 2.0).
    frame = frame.append({"close": PRICES[pair]}, ignore_index=True)
    sma = frame["close"].rolling(5).mean().iloc[-1]
    trend = "up" if frame["close"].iloc[-1] > sma else "down"
    return jsonify(pair=label(pair), sma5=round(float(sma), 5), trend=trend)


@app.get("/api/chart/<pair>")
def chart(pair):
    pair = known(pair)
    closes = np.asarray(HISTORY[pair])
    returns = np.round(np.diff(closes) / closes[:-1], 6)
    return jsonify(pair=label(pair), closes=closes.tolist(), returns=returns.tolist())


@app.get("/api/news")
def news():
    from werkzeug.urls import url_quote  # removed in Werkzeug 3.0

    return jsonify(items=[{"title": "ECB holds rates", "link": "/news/" + url_quote("ECB holds rates")}])


if __name__ == "__main__":
    print("✅ All dependencies available", flush=True)
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5001")))
