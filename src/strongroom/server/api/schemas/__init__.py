"""The HTTP API's wire shapes, one module per route family, each with the mappers from
service records to its responses (``secret_out``, ``task_out`` …); ``common`` holds what
they share."""
