"""/v1/files of the local OpenAI-compatible server (owned by the train stage)."""
from fastapi import APIRouter

router = APIRouter()
