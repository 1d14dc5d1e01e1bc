# python-diameter's constants: AVP, command, application and vendor ids and the values of
# Enumerated AVPs are all ints; the Service-Context-Ids and three name tables are not
# (tests/test_type_stubs.py checks that this lists every name that is not an int).
from typing import Final

SERVICE_CONTEXT_ABMF_RC_INFORMATION: Final[str]
SERVICE_CONTEXT_AOC_SERVICE_INFORMATION: Final[str]
SERVICE_CONTEXT_CPDT_CHARGING: Final[str]
SERVICE_CONTEXT_EXPOSURE_FUNCTION_API_CHARGING: Final[str]
SERVICE_CONTEXT_IMS_CHARGING: Final[str]
SERVICE_CONTEXT_LCS_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_MBMS_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_MMS_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_MMTEL_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_MONITORING_EVENT_CHARGING: Final[str]
SERVICE_CONTEXT_POC_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_PROSE_CHARGING: Final[str]
SERVICE_CONTEXT_PS_CHARGING: Final[str]
SERVICE_CONTEXT_SMS_SERVICE_CHARGING: Final[str]
SERVICE_CONTEXT_VCS_CHARGING: Final[str]

APPLICATIONS: dict[int, str]
SERVICE_CONTEXTS: dict[str, str]
VENDORS: dict[int, str]

# every other public name
def __getattr__(name: str) -> int: ...
