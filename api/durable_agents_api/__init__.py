"""The API layer under both packages: the resource models (the source of the CRDs), the runtime config
contract the operator renders and the worker reads, the payloads and names that cross a process boundary,
manifest loading, and the formatting of validation errors. It imports nothing of the runtime or the
operator."""
