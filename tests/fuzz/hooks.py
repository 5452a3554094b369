"""schemathesis hooks for the run of test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS)."""
import schemathesis
from hypothesis import strategies as st

# A tus chunk is raw bytes; schemathesis has no built-in serializer for its media type.
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
