"""The sandbox WhatsApp-Web network: ``bisnesgpt sandbox wweb`` (a stand-in for WhatsApp's servers)."""
