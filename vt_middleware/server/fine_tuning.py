"""/v1/fine_tuning/jobs of the local OpenAI-compatible server (owned by the train stage)."""
from fastapi import APIRouter

router = APIRouter()
