import threading

import pytest

from exchange_sim import serve


@pytest.fixture(scope="session")
def sim_url():
    server = serve(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
