"""Deployment plans: export a fine-tuned policy per device, load and verify plan folders.

``plan.json`` follows a versioned JSON Schema shipped in this package (``plan.schema.json``,
documented in ``docs/plan.md``); weights are safetensors, one file per device.
"""

from snnas.plan._export import PLAN_FILE, build_plan, export_plan, sha256_file
from snnas.plan._load import LoadedPlan, load_plan
from snnas.plan._model import Plan
from snnas.plan._program import (
    DeviceNet,
    Op,
    Receive,
    Send,
    architecture_of,
    device_ops,
    run_device,
)
from snnas.plan._schema import SCHEMA_VERSION, plan_schema, validate_plan
from snnas.plan._verify import compare_logits, execute_plan, verify_plan

__all__ = [
    "PLAN_FILE",
    "SCHEMA_VERSION",
    "DeviceNet",
    "LoadedPlan",
    "Op",
    "Plan",
    "Receive",
    "Send",
    "architecture_of",
    "build_plan",
    "compare_logits",
    "device_ops",
    "execute_plan",
    "export_plan",
    "load_plan",
    "plan_schema",
    "run_device",
    "sha256_file",
    "validate_plan",
    "verify_plan",
]
