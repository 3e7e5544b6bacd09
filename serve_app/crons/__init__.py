"""Crons of the LangGraph API: durable schedules in Postgres and the scheduler that fires them."""
