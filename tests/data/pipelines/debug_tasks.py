"""The python step of debug_etl.yaml: doubles the rows extract made."""

from typing import Any


def transform(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if payload["params"]["fail_at"] == "transform":
        raise RuntimeError("transform refused")
    return {"doubled": payload["inputs"]["extract"]["rows"] * 2}
