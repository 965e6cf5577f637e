"""Attachments of user messages: images (recognised, cleaned and scaled here) and
documents (their text, `documents`), saved with the message, served owner-checked,
and turned into what the model is sent.
"""
