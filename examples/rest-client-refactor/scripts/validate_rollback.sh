#!/bin/sh
# The seed's validate_rollback.sh: the pre-conversion code is back, and it works.
set -eu
echo "Validating rollback completion..."
grep -q "Optional\[RestManager\]" src/exchanges/interfaces/rest/rest_base.py \
  || { echo "BaseRestInterface rollback incomplete" >&2; exit 1; }
echo "BaseRestInterface lazy initialization restored"
n=$(grep -r "async def create_rest_manager" src/exchanges/integrations/*/rest/*.py | wc -l)
[ "$n" -eq 6 ] || { echo "Exchange abstract methods rollback incomplete: $n of 6" >&2; exit 1; }
echo "Exchange abstract methods restored ($n)"
python3 -c "
import sys; sys.path.insert(0, 'src')
from exchanges.integrations.mexc.rest.mexc_rest_spot_private import MexcPrivateSpotRest
assert 'create_rest_manager' in MexcPrivateSpotRest.__dict__
print('MEXC implementation restored')
"
