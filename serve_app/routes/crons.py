"""Crons routes of the LangGraph Agent Server API."""

from fastapi import APIRouter

router = APIRouter()
