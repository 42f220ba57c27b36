"""Broker domain logic: topics, produce validation, the state machine, dispatch, long polls.

Plain code over the store classes; no threads, asyncio or pykka (actors wrap it).
"""
