"""Named DIMSE status codes used by the node (PS3.4 Annex B and C, PS3.7 Annex C)."""

SUCCESS = 0x0000

# PS3.7 C: general statuses (also the N-ACTION statuses of PS3.7 10.1.4.1.10)
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111  # N-CREATE of an instance that exists (PS3.7 C.4.1)
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
INVALID_ATTRIBUTE_VALUE = 0x0106  # N-CREATE/N-SET: an attribute value out of range
NO_SUCH_SOP_CLASS = 0x0118
MISSING_ATTRIBUTE = 0x0120  # N-CREATE: a required attribute not given
CLASS_INSTANCE_CONFLICT = 0x0119
NO_SUCH_ACTION = 0x0123
NOT_AUTHORISED = 0x0124
UNRECOGNIZED_OPERATION = 0x0211
RESOURCE_LIMITATION = 0x0213

# PS3.4 B.2.3 Storage Service Class statuses
OUT_OF_RESOURCES = 0xA700
INDEX_UNAVAILABLE = 0xA701  # A7xx: refused, out of resources (the index could not take the row)
DATASET_MISMATCH = 0xA900  # A9xx: Data Set does not match SOP Class
UID_MISMATCH = 0xA901  # dataset SOP Instance UID differs from the command's
MISSING_UID = 0xA902  # Study, Series or SOP Instance UID missing
MALFORMED_UID = 0xA903  # a UID that is not digits and dots, or longer than 64 characters
CANNOT_UNDERSTAND = 0xC000  # Cxxx: the dataset cannot be parsed
# Cxxx failures of our own (PS3.4 B.2.3 leaves C000-CFFF to the SCP): a final refusal, never an
# A7xx that modalities take as "out of resources, send again later". dcm4chee-arc answers a
# study of another patient with 0xA779 (conflicting patient attributes); an A7xx would make a
# modality resend an instance that can never be accepted.
UID_CONFLICT = 0xC409  # Study or Series Instance UID recorded for another patient or study
SOP_INSTANCE_CONFLICT = 0xC40A  # SOP Instance UID already holds a different object, kept
REJECTED_INSTANCE = 0xC40B  # a resend of an instance rejected (IHE IOCM): not stored again
REJECTION_FAILED = 0xC40C  # a rejection note references instances not stored or not visible

# PS3.4 C.4.1.1.4 Query/Retrieve statuses
IDENTIFIER_MISMATCH = 0xA900  # Identifier does not match SOP Class (level, unique keys)
UNABLE_TO_PROCESS = 0xC000  # Cxxx: a malformed value in the identifier
QUERY_FAILED = 0xC001  # Cxxx: the index could not answer (unreachable, or an internal error)
CANCELLED = 0xFE00  # matching or sub-operations terminated by a C-CANCEL
PENDING = 0xFF00  # a match, more may follow

# PS3.4 C.4.2.1.5 / C.4.3.1.4 C-MOVE and C-GET statuses
TOO_MANY_MATCHES = 0xA701  # Refused: Out of Resources - unable to calculate number of matches
SUB_OPERATIONS_FAILED = 0xA702  # Refused: Out of Resources - unable to perform sub-operations
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_WARNING = 0xB000  # Sub-operations complete, one or more failures or warnings
