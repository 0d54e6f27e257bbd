"""The pipeline file format (DESIGN section 2) as pydantic models.

Contract: these models are the format. A JSON Schema generated from them is committed as
`engine/pipeline.schema.json` and a test keeps it current. Models do no I/O: `engine.loader`
reads files and turns model errors into `ValidationIssue`s with file, line and node id; the
cross-node checks (duplicates, unknown needs, cycles, expressions, agents) live there too.

Defaults inheritance: a node's `retry` and `breaker` are partial; the pipeline's `defaults` fill
in whatever the node leaves out (`Pipeline.retry_for`, `Pipeline.breaker_for`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from engine.traits import traits_of

if TYPE_CHECKING:
    from engine.graph import Graph

PIPELINE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
BUILTIN_TYPES = (
    "shell",
    "python",
    "agent",
    "condition",
    "delay",
    "approval",
    "trigger",
    "action",
    "parallel",
)
TRIGGER_RULES = ("all_success", "none_failed", "all_done", "one_failed")
ERROR_CLASS_NAMES = (
    "transient",
    "timeout",
    "error",
    "gate",
    "circuit_open",
    "rejected",
    "cancelled",
    "config",
)

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# Ten years: longer is "never" in practice, and a deadline past year 9999 cannot be a datetime.
MAX_DURATION = 10 * 365 * 24 * 3600.0


def parse_duration(value: Any) -> float:
    """`250ms`, `1.5s`, `2m`, `1h` or a bare number of seconds -> seconds (float, >= 0)."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use e.g. 250ms, 1.5s, 2m, 1h or seconds")
    seconds: float | None = None
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise ValueError(f"bad duration {_clip(value)}: must be a finite number >= 0")
        seconds = float(value) if value <= MAX_DURATION else float("inf")
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds is None:
        raise ValueError(
            f"bad duration {_clip(value)}: use e.g. 250ms, 1.5s, 2m, 1h or seconds"
        )
    if seconds > MAX_DURATION:
        raise ValueError(f"bad duration {_clip(value)}: at most 10 years ({MAX_DURATION:g}s)")
    return seconds


def _clip(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "<huge number>"
    return text if len(text) <= 40 else text[:37] + "..."


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for snapshots and messages."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$"},
            ],
            "description": "250ms, 1.5s, 2m, 1h, or a bare number of seconds",
        }
    ),
]

ErrorClassName = Literal[
    "transient", "timeout", "error", "gate", "circuit_open", "rejected", "cancelled", "config"
]
TriggerRule = Literal["all_success", "none_failed", "all_done", "one_failed"]


class _Model(BaseModel):
    # Bytes (YAML `!!binary`) in free-form values such as a param default are snapshotted as
    # base64 text: the default, UTF-8, cannot hold arbitrary bytes and made `snapshot()` fail.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, ser_json_bytes="base64"
    )


class Backoff(_Model):
    initial: Duration = 1.0
    max: Duration = 60.0
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)


class RetryPolicy(_Model):
    """How often a node is tried and after which errors. `max_attempts` counts all attempts."""

    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff: Backoff = Backoff()
    on: tuple[ErrorClassName, ...] = ("transient", "timeout")


class BackoffOverride(_Model):
    initial: Duration | None = None
    max: Duration | None = None
    multiplier: float | None = Field(default=None, ge=1.0)
    jitter: float | None = Field(default=None, ge=0.0, le=1.0)


class RetryOverride(_Model):
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    backoff: BackoffOverride | None = None
    on: tuple[ErrorClassName, ...] | None = None


class BreakerPolicy(_Model):
    """A circuit breaker: opens after `failure_threshold` consecutive failed attempts."""

    key: str | None = None
    failure_threshold: int = Field(default=5, ge=1)
    recovery_timeout: Duration = 30.0


class BreakerOverride(_Model):
    key: str | None = None
    failure_threshold: int | None = Field(default=None, ge=1)
    recovery_timeout: Duration | None = None


class Defaults(_Model):
    timeout: Duration = 300.0
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()


# An environment variable's name: `=` would end the name, a NUL the whole entry (execve).
ENV_NAME_PATTERN = r"^[^=\x00]+$"
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]


def _finite(value: Any) -> Any:
    from engine.strictjson import check_finite

    check_finite(value, "default")
    return value


class SecretRef(_Model):
    """An env value read from the process environment when the node starts."""

    from_env: str = Field(min_length=1, pattern=ENV_NAME_PATTERN)
    secret: bool = False


def _no_nul(what: str) -> Any:
    """A validator: a string handed to execve or chdir cannot hold a NUL (it would end it)."""

    def check(value: Any) -> Any:
        texts = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else [value])
        for text in texts:
            if isinstance(text, str) and "\x00" in text:
                raise ValueError(f"{what} cannot contain a NUL byte: {_clip(text)}")
        return value

    return check


NotifyOn = Literal["succeeded", "failed", "timeout", "cancelled", "waiting"]


def _has_credentials(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None


class Notify(_Model):
    """One notification target (`engine.notify` delivers it): a webhook or a command.

    `timeout` bounds the whole delivery, retries included: the run's `run.completed` waits for
    it at most that long (the delivery is recorded before it)."""

    on: tuple[NotifyOn, ...] = ("failed", "timeout")
    webhook: str | None = Field(default=None, pattern=r"^https?://\S+$")
    headers: dict[str, str | SecretRef] = {}
    command: Annotated[
        list[str] | None, AfterValidator(_no_nul("a command argument"))
    ] = Field(default=None, min_length=1)
    timeout: Duration = 10.0
    max_attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _one_target(self) -> Notify:
        if (self.webhook is None) == (self.command is None):
            raise ValueError(
                "a notify entry needs exactly one of `webhook: URL` or `command: [...]`"
            )
        if self.headers and self.webhook is None:
            raise ValueError("`headers` go with `webhook`, not `command`")
        if self.webhook is not None and _has_credentials(self.webhook) and any(
            name.lower() == "authorization" for name in self.headers
        ):
            # httpx sends the URL's credentials as Basic auth in place of the header.
            raise ValueError(
                "a webhook URL with credentials (user:password@) and an `Authorization` "
                "header: only the URL's would be sent; keep one of them"
            )
        if not self.on:
            raise ValueError("a notify `on` list names at least one of its run states")
        if self.timeout <= 0:
            raise ValueError("a notify `timeout` must be above 0")
        return self


class ParamSpec(_Model):
    default: Annotated[Any, AfterValidator(_finite)] = None
    description: str | None = None


class ScheduleEntry(_Model):
    """One `schedule:` entry: a 5-field `cron` (in `timezone`, UTC by default) or a fixed
    interval (`every`), fired by `interlock serve` with `params`."""

    cron: str | None = None
    every: Duration | None = None
    timezone: str | None = None
    params: dict[str, Any] = {}

    @field_validator("cron")
    @classmethod
    def _cron_is_five_fields(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter  # only files with a cron schedule pay for the import

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"bad cron expression {_clip(value)}: use 5 fields, minute hour day month "
                "weekday, e.g. '0 2 * * *'"
            )
        return value

    @field_validator("every")
    @classmethod
    def _every_is_positive(cls, value: float | None) -> float | None:
        if value is not None and value < 1.0:
            raise ValueError(
                f"every {value:g}s is too short: a schedule fires at most once a second"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_is_known(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {_clip(value)}: use an IANA name such as 'Europe/Paris'"
            ) from None
        return value

    @model_validator(mode="after")
    def _cron_or_every(self) -> ScheduleEntry:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule entry needs exactly one of 'cron' or 'every'")
        if self.every is not None and self.timezone is not None:
            raise ValueError("'timezone' applies to 'cron' only; 'every' counts from the epoch")
        return self


class Edge(_Model):
    from_: str = Field(alias="from")
    to: str


NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]


class NodeBase(_Model):
    id: NodeId
    type: str
    name: str | None = None
    description: str | None = None
    needs: tuple[str, ...] = ()
    when: dict[str, bool] | None = None
    trigger: TriggerRule = "all_success"
    optional: bool = False
    gate: Literal["hard"] | None = None
    timeout: Duration | None = None
    retry: RetryOverride | None = None
    breaker: BreakerOverride | None = None

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def does_work(self) -> bool:
        """True for nodes whose work `simulate` mode replaces (`engine.traits`)."""
        return traits_of(self.type).does_work

    @property
    def has_breaker(self) -> bool:
        """True for nodes a circuit breaker guards: by type (`engine.traits`), and never a hard
        gate (its verdict is about the work, not the service behind it)."""
        return traits_of(self.type).has_breaker and self.gate != "hard"


class ShellNode(NodeBase):
    type: Literal["shell"]
    command: Annotated[list[str] | str, AfterValidator(_no_nul("a command argument"))]
    env: Annotated[
        dict[EnvName, str | SecretRef], AfterValidator(_no_nul("an environment value"))
    ] = {}
    cwd: Annotated[str | None, AfterValidator(_no_nul("the cwd"))] = None


class PythonNode(NodeBase):
    type: Literal["python"]
    call: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class AgentNode(NodeBase):
    type: Literal["agent"]
    agent: str = Field(min_length=1)
    config: dict[str, Any] = {}


class ConditionNode(NodeBase):
    type: Literal["condition"]
    expr: str = Field(min_length=1)


class DelayNode(NodeBase):
    type: Literal["delay"]
    duration: Duration


class ApprovalNode(NodeBase):
    type: Literal["approval"]
    message: str | None = None


class TriggerNode(NodeBase):
    type: Literal["trigger"]


class ActionNode(NodeBase):
    type: Literal["action"]
    message: str | None = None
    artifact: str | None = None


class ParallelNode(NodeBase):
    type: Literal["parallel"]


class PluginNode(NodeBase):
    """A node of a type registered through the `interlock.nodes` entry-point group."""

    # Schema only: without the `not`, a built-in node would match two `oneOf` branches.
    type: str = Field(json_schema_extra={"not": {"enum": list(BUILTIN_TYPES)}})
    config: dict[str, Any] = {}


def _node_tag(value: Any) -> str:
    node_type = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    return node_type if node_type in BUILTIN_TYPES else "plugin"


Node = Annotated[
    Annotated[ShellNode, Tag("shell")]
    | Annotated[PythonNode, Tag("python")]
    | Annotated[AgentNode, Tag("agent")]
    | Annotated[ConditionNode, Tag("condition")]
    | Annotated[DelayNode, Tag("delay")]
    | Annotated[ApprovalNode, Tag("approval")]
    | Annotated[TriggerNode, Tag("trigger")]
    | Annotated[ActionNode, Tag("action")]
    | Annotated[ParallelNode, Tag("parallel")]
    | Annotated[PluginNode, Tag("plugin")],
    Discriminator(_node_tag),
]


class Pipeline(_Model):
    """A whole pipeline definition. Cross-node rules are checked by `engine.loader`."""

    id: str = Field(pattern=PIPELINE_ID_PATTERN)
    name: str | None = None
    description: str | None = None
    params: dict[str, ParamSpec] = {}
    timeout: Duration = 3600.0
    max_concurrency: int = Field(default=8, ge=1, le=10_000)
    cleanup_grace: Duration = 2.0
    fail_fast: bool = False
    defaults: Defaults = Defaults()
    agents: dict[str, str] = {}
    notify: tuple[Notify, ...] = ()
    edges: tuple[Edge, ...] = ()
    schedule: tuple[ScheduleEntry, ...] = ()
    nodes: tuple[Node, ...] = Field(min_length=1)

    @property
    def label(self) -> str:
        return self.name or self.id

    @cached_property
    def graph(self) -> Graph:
        """The pipeline's one DAG (needs and top-level edges merged), built on first use and
        shared by validation, the scheduler, the fold and the console. Raises `ValueError` for
        a cycle or an unknown need: the loader reports those before anyone asks for it."""
        from engine.graph import Graph

        parents = {node.id: list(node.needs) for node in self.nodes}
        for edge in self.edges:
            if edge.to in parents:
                parents[edge.to].append(edge.from_)
        return Graph([node.id for node in self.nodes], parents)

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Pipeline:
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("graph", None)  # a copy with other nodes must not keep this one's DAG
        return copy

    def node(self, node_id: str) -> NodeBase:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def needs_of(self, node: NodeBase) -> tuple[str, ...]:
        """`needs` plus parents named by top-level `edges`, without duplicates, in file order."""
        extra = tuple(e.from_ for e in self.edges if e.to == node.id and e.from_ not in node.needs)
        return tuple(dict.fromkeys(node.needs + extra))

    def timeout_for(self, node: NodeBase) -> float:
        return node.timeout if node.timeout is not None else self.defaults.timeout

    def retry_for(self, node: NodeBase) -> RetryPolicy:
        base = self.defaults.retry
        over = node.retry
        if over is None:
            return base
        backoff = base.backoff
        if over.backoff is not None:
            backoff = backoff.model_copy(update=over.backoff.model_dump(exclude_none=True))
        return RetryPolicy(
            max_attempts=over.max_attempts or base.max_attempts,
            backoff=backoff,
            on=over.on if over.on is not None else base.on,
        )

    def breaker_for(self, node: NodeBase) -> BreakerPolicy:
        key, failure_threshold, recovery_timeout = self.breaker_terms(node)
        # Built from fields already validated (the defaults' and the node's override).
        return BreakerPolicy.model_construct(
            key=key, failure_threshold=failure_threshold, recovery_timeout=recovery_timeout
        )

    def breaker_terms(self, node: NodeBase) -> tuple[str, int, float]:
        """The node's breaker (key, failure threshold, recovery timeout): its override, else
        the pipeline's defaults, the key defaulting to `pipeline/node`. Plain values, as a run
        reads them for every node (a policy model per node cost a run's plan a fifth of its
        time, W10)."""
        base, over = self.defaults.breaker, node.breaker
        if over is None:
            return base.key or f"{self.id}/{node.id}", base.failure_threshold, base.recovery_timeout
        return (
            over.key or base.key or f"{self.id}/{node.id}",
            base.failure_threshold if over.failure_threshold is None else over.failure_threshold,
            base.recovery_timeout if over.recovery_timeout is None else over.recovery_timeout,
        )

    def snapshot(self) -> dict[str, Any]:
        """The definition as stored in `run.created` (secrets stay references, never values)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the pipeline format, generated from the models."""
    schema = Pipeline.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Interlock pipeline"
    return schema
