"""Process roles (api, wwebjs, meta, legacy): entry points and the runtime they share."""
