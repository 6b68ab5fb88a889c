"""IAM policy documents (Version 1.1): parsing, validation and evaluation.

Sans-I/O; ``shared/spec/huaweicloud-auth.md`` §5.1 is the reference. An explicit Deny
beats an Allow, which beats the implicit deny. A policy may only say what this service
evaluates: a ``Resource`` other than ``"*"``, a condition key the service never sets or an
unknown operator is refused when the policy is created, and read so that it fails closed
when a stored policy holds one (:func:`stored_policy`).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from imagejobs.domain.errors import InvalidParameter, PermissionDenied

__all__ = [
    "SYSTEM_POLICIES",
    "WORKSPACE_FULL_ACCESS",
    "WORKSPACE_READ_ONLY_ACCESS",
    "Condition",
    "ContextValue",
    "Decision",
    "Effect",
    "Policy",
    "RequestContext",
    "Statement",
    "evaluate",
    "parse_policy",
    "reads_the_time",
    "require_allowed",
    "stored_policy",
]

ContextValue = str | bool | datetime
_Test = Callable[[ContextValue | None], bool]
_Match = Callable[[ContextValue], bool]

SUPPORTED_VERSION = "1.1"
# Bounds the work a single pattern can cost at evaluation time.
_MAX_PATTERN_LENGTH = 512
_ACTION = re.compile(r"([a-z0-9*-]+):([^\s:\x00-\x1f\x7f]+):([^\s:\x00-\x1f\x7f]+)")
_CONDITION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*:[^\s\x00-\x1f\x7f]+")
_STATEMENT_ELEMENTS = frozenset({"Sid", "Effect", "Action", "Resource", "Condition"})


class Effect(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class Decision(StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True, slots=True)
class _Glob:
    """A ``*`` (and optionally ``?``) wildcard matched without backtracking.

    The pattern is cut at each ``*`` into fixed-length chunks of escaped literals; chunks
    are placed leftmost-first, which is optimal for this kind of pattern, so the cost stays
    linear in the text for each chunk however many ``*`` a policy author writes.
    """

    chunks: tuple[re.Pattern[str], ...]
    lengths: tuple[int, ...]
    match_all: bool

    def matches(self, text: str) -> bool:
        if self.match_all:
            return True
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks[0].fullmatch(text) is not None
        if chunks[0].match(text) is None:
            return False
        position, end = self.lengths[0], len(text) - self.lengths[-1]
        if end < position:
            return False
        for chunk in chunks[1:-1]:
            found = chunk.search(text, position, end)
            if found is None:
                return False
            position = found.end()
        return chunks[-1].fullmatch(text, end) is not None


@lru_cache(maxsize=2048)
def _glob(pattern: str, *, question_mark: bool, ignore_case: bool) -> _Glob:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    pieces = pattern.split("*")
    chunks = tuple(
        re.compile(
            "".join("." if question_mark and char == "?" else re.escape(char) for char in piece),
            flags,
        )
        for piece in pieces
    )
    return _Glob(
        chunks, tuple(len(piece) for piece in pieces), pattern != "" and not pattern.strip("*")
    )


def _split_action(action: str) -> tuple[str, str, str]:
    service, resource_type, operation = action.split(":")
    return service, resource_type, operation


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a policy is evaluated against: the action and the condition-key values.

    Every key in ``CONDITION_KEYS`` has a value here; None means the request has none
    (IsNullOrEmpty and the IfExists operators see that).
    """

    action: str
    current_time: datetime
    user_id: str | None = None
    user_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    # No credential of this service is ever obtained with MFA.
    mfa_present: bool | None = False
    _segments: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            segments = _split_action(self.action)
        except ValueError:
            raise ValueError(
                f"action {self.action!r} is not service:resourceType:operation"
            ) from None
        object.__setattr__(self, "_segments", segments)

    def value(self, key: str) -> ContextValue | None:
        """The value of condition key ``key`` (case-insensitive), None when absent."""
        return _GLOBAL_KEYS[key.lower()](self)


# The condition keys a policy may test, as Huawei spells them: those the service sets on
# every request. A key it never sets would make a Deny that never applies.
_KEY_VALUES: dict[str, Callable[[RequestContext], ContextValue | None]] = {
    "g:CurrentTime": lambda context: context.current_time,
    "g:DomainId": lambda context: context.domain_id,
    "g:DomainName": lambda context: context.domain_name,
    "g:MFAPresent": lambda context: context.mfa_present,
    "g:ProjectId": lambda context: context.project_id,
    "g:ProjectName": lambda context: context.project_name,
    "g:UserId": lambda context: context.user_id,
    "g:UserName": lambda context: context.user_name,
}
CONDITION_KEYS = tuple(_KEY_VALUES)
# Keys are matched case-insensitively.
_GLOBAL_KEYS = {key.lower(): read for key, read in _KEY_VALUES.items()}


def _as_text(value: ContextValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _as_utc(moment: datetime) -> datetime:
    # Naive times are taken as UTC: policies and the server clock both speak UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _parse_bool(text: str) -> bool:
    if text.lower() not in {"true", "false"}:
        raise ValueError(f"value {text!r} must be true or false")
    return text.lower() == "true"


def _equals(values: tuple[str, ...]) -> _Match:
    wanted = frozenset(values)
    return lambda value: _as_text(value) in wanted


def _equals_ignore_case(values: tuple[str, ...]) -> _Match:
    wanted = frozenset(text.casefold() for text in values)
    return lambda value: _as_text(value).casefold() in wanted


def _like(values: tuple[str, ...]) -> _Match:
    globs = tuple(_glob(text, question_mark=True, ignore_case=False) for text in values)
    return lambda value: any(g.matches(_as_text(value)) for g in globs)


def _start_with(values: tuple[str, ...]) -> _Match:
    return lambda value: _as_text(value).startswith(values)


def _end_with(values: tuple[str, ...]) -> _Match:
    return lambda value: _as_text(value).endswith(values)


def _date(compare: Callable[[datetime, datetime], bool]) -> Callable[[tuple[str, ...]], _Match]:
    def build(values: tuple[str, ...]) -> _Match:
        try:
            limits = tuple(_as_utc(datetime.fromisoformat(text)) for text in values)
        except ValueError:
            raise ValueError("values must be ISO 8601 times such as 2025-01-01T00:00:00Z") from None
        return lambda value: (
            isinstance(value, datetime) and any(compare(_as_utc(value), limit) for limit in limits)
        )

    return build


def _bool(values: tuple[str, ...]) -> _Match:
    wanted = frozenset("true" if _parse_bool(text) else "false" for text in values)
    return lambda value: _as_text(value).lower() in wanted


# operator -> (negated, builder). Each builder's test is "the value matches any listed value".
_OPERATORS: dict[str, tuple[bool, Callable[[tuple[str, ...]], _Match]]] = {
    "StringEquals": (False, _equals),
    "StringNotEquals": (True, _equals),
    "StringEqualsIgnoreCase": (False, _equals_ignore_case),
    "StringNotEqualsIgnoreCase": (True, _equals_ignore_case),
    "StringLike": (False, _like),
    "StringNotLike": (True, _like),
    "StringStartWith": (False, _start_with),
    "StringEndWith": (False, _end_with),
    "DateLessThan": (False, _date(operator.lt)),
    "DateLessThanEquals": (False, _date(operator.le)),
    "DateGreaterThan": (False, _date(operator.gt)),
    "DateGreaterThanEquals": (False, _date(operator.ge)),
    "Bool": (False, _bool),
}
_BOOLEAN_OPERATORS = frozenset({"Bool", "IsNullOrEmpty"})


def _base_operator(name: str) -> tuple[str, bool]:
    """Strip the ``IfExists`` and ``AnyOf`` suffixes; report whether IfExists was there."""
    if_exists = name.endswith("IfExists")
    base = name.removesuffix("IfExists")
    # Context values are single-valued, so "any of them matches" is the plain operator.
    return base.removesuffix("AnyOf"), if_exists


def _compile_condition(name: str, values: tuple[str, ...]) -> _Test:
    base, if_exists = _base_operator(name)
    if base == "IsNullOrEmpty":
        expected = frozenset(_parse_bool(text) for text in values)
        return lambda value: (value is None or value == "") in expected
    entry = _OPERATORS.get(base)
    if entry is None:
        raise ValueError(f"operator {name} is not supported")
    negated, build = entry
    matches_any = build(values)

    # A key absent from the request satisfies only IfExists operators, negated or not:
    # the least surprising reading when the docs are silent.
    def holds(value: ContextValue | None) -> bool:
        if value is None:
            return if_exists
        return matches_any(value) is not negated

    return holds


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator: {key: [values]}`` test; all conditions of a statement must hold."""

    operator: str
    key: str
    values: tuple[str, ...]
    _test: _Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _CONDITION_KEY.fullmatch(self.key):
            raise ValueError(f"condition key {self.key!r} must look like g:UserName")
        if self.key.lower() not in _GLOBAL_KEYS:
            raise ValueError(
                f"condition key {self.key!r} is not supported: this service sets only "
                f"{', '.join(CONDITION_KEYS)}"
            )
        if not self.values:
            raise ValueError("needs at least one value")
        object.__setattr__(self, "_test", _compile_condition(self.operator, self.values))

    def holds(self, context: RequestContext) -> bool:
        return self._test(context.value(self.key))


@dataclass(frozen=True, slots=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    # Only "*": every resource (see _check_resource), so it never narrows a statement.
    resources: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None
    _action_globs: tuple[tuple[_Glob, _Glob, _Glob], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.actions:
            raise ValueError("Action needs at least one action")
        object.__setattr__(self, "_action_globs", tuple(map(_compile_action, self.actions)))
        for resource in self.resources:
            _check_resource(resource)

    def applies_to(self, context: RequestContext) -> bool:
        """Whether the statement covers the context's action and conditions."""
        service, resource_type, operation = context._segments
        if not any(
            s.matches(service) and r.matches(resource_type) and o.matches(operation)
            for s, r, o in self._action_globs
        ):
            return False
        return all(condition.holds(context) for condition in self.conditions)


def _compile_action(action: str) -> tuple[_Glob, _Glob, _Glob]:
    if len(action) > _MAX_PATTERN_LENGTH:
        raise ValueError(f"action is longer than {_MAX_PATTERN_LENGTH} characters")
    if _ACTION.fullmatch(action) is None:
        raise ValueError(
            f"action {action!r} must be service:resourceType:operation "
            "with a lower-case service name and no spaces"
        )
    service, resource_type, operation = _split_action(action)
    return (
        _glob(service, question_mark=False, ignore_case=False),
        _glob(resource_type, question_mark=False, ignore_case=True),
        _glob(operation, question_mark=False, ignore_case=True),
    )


def _check_resource(resource: str) -> None:
    # Huawei: an action without resource-level permissions takes only "*" as its resource.
    # No WorkspaceApp image-job action has them (each acts on a whole project), so any other
    # value would look like a restriction the service cannot enforce.
    if resource != "*":
        raise ValueError(
            "is not supported: WorkspaceApp image-job actions have no resource-level "
            'permissions, so Resource may only be "*" (or left out); '
            "scope a policy to a project when you attach it"
        )


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]
    version: str = SUPPORTED_VERSION

    def to_document(self) -> dict[str, object]:
        """The policy as a JSON-ready document that :func:`parse_policy` reads back."""
        statements: list[dict[str, object]] = []
        for statement in self.statements:
            item: dict[str, object] = {}
            if statement.sid is not None:
                item["Sid"] = statement.sid
            item["Effect"] = str(statement.effect)
            item["Action"] = list(statement.actions)
            if statement.resources:
                item["Resource"] = list(statement.resources)
            if statement.conditions:
                grouped: dict[str, dict[str, list[str]]] = {}
                for condition in statement.conditions:
                    grouped.setdefault(condition.operator, {})[condition.key] = list(
                        condition.values
                    )
                item["Condition"] = grouped
            statements.append(item)
        return {"Version": self.version, "Statement": statements}


def _string_list(value: object, path: str, *, allow_bool: bool = False) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    result = []
    for index, item in enumerate(items):
        if isinstance(item, bool) and allow_bool:
            result.append("true" if item else "false")
        elif isinstance(item, str):
            result.append(item)
        else:
            raise InvalidParameter(f"{path}[{index}]", "must be a string")
    if not result:
        raise InvalidParameter(path, "must not be empty")
    return tuple(result)


def _parse_conditions(value: object, path: str) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise InvalidParameter(path, "must be an object of operator: {key: [values]}")
    conditions = []
    for operator_name, tests in value.items():
        operator_path = f"{path}.{operator_name}"
        if not isinstance(tests, dict) or not tests:
            raise InvalidParameter(operator_path, "must be a non-empty object of key: [values]")
        allow_bool = _base_operator(operator_name)[0] in _BOOLEAN_OPERATORS
        for key, raw_values in tests.items():
            key_path = f"{operator_path}.{key}"
            values = _string_list(raw_values, key_path, allow_bool=allow_bool)
            try:
                conditions.append(Condition(operator_name, key, values))
            except ValueError as exc:
                raise InvalidParameter(key_path, str(exc)) from None
    return tuple(conditions)


def _parse_statement(value: object, path: str) -> Statement:
    if not isinstance(value, dict):
        raise InvalidParameter(path, "must be an object")
    unknown = sorted(set(value) - _STATEMENT_ELEMENTS)
    if unknown:
        raise InvalidParameter(path, f"has unsupported elements {', '.join(unknown)}")
    raw_effect = value.get("Effect")
    if not isinstance(raw_effect, str) or raw_effect not in {"Allow", "Deny"}:
        raise InvalidParameter(f"{path}.Effect", "must be Allow or Deny")
    effect = Effect(raw_effect)
    if "Action" not in value:
        raise InvalidParameter(f"{path}.Action", "is required")
    actions = _string_list(value["Action"], f"{path}.Action")
    resources = _string_list(value["Resource"], f"{path}.Resource") if "Resource" in value else ()
    conditions = (
        _parse_conditions(value["Condition"], f"{path}.Condition") if "Condition" in value else ()
    )
    sid = value.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise InvalidParameter(f"{path}.Sid", "must be a string")
    # Compile each pattern here too (cached) so the error can name its position.
    for index, action in enumerate(actions):
        _validated(_compile_action, action, f"{path}.Action[{index}]")
    for index, resource in enumerate(resources):
        _validated(_check_resource, resource, f"{path}.Resource[{index}]")
    return Statement(effect, actions, resources, conditions, sid)


def _validated(compile_pattern: Callable[[str], object], pattern: str, path: str) -> None:
    try:
        compile_pattern(pattern)
    except ValueError as exc:
        raise InvalidParameter(path, str(exc)) from None


def parse_policy(
    document: str | bytes | Mapping[str, object], *, parameter: str = "policy"
) -> Policy:
    """Validate a Version 1.1 policy document; raise InvalidParameter naming the bad element.

    ``parameter`` prefixes the element path in error messages (e.g. ``role.policy``).
    """
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError:
            raise InvalidParameter(parameter, "is not valid JSON") from None
    if not isinstance(document, Mapping):
        raise InvalidParameter(parameter, "must be a JSON object")
    unknown = sorted(set(document) - {"Version", "Statement"})
    if unknown:
        raise InvalidParameter(parameter, f"has unsupported elements {', '.join(unknown)}")
    if document.get("Version") != SUPPORTED_VERSION:
        raise InvalidParameter(f"{parameter}.Version", f'must be "{SUPPORTED_VERSION}"')
    raw_statements = document.get("Statement")
    if not isinstance(raw_statements, list) or not raw_statements:
        raise InvalidParameter(f"{parameter}.Statement", "must be a non-empty list")
    return Policy(
        tuple(
            _parse_statement(item, f"{parameter}.Statement[{index}]")
            for index, item in enumerate(raw_statements)
        )
    )


_DENY_EVERYTHING = Statement(Effect.DENY, ("*:*:*",))


def stored_policy(document: str) -> Policy:
    """A stored policy document, read so that it never grants more than its author meant.

    Documents stored before the rules above (a ``Resource`` that was accepted but ignored,
    a condition key the service never sets) no longer validate. Such a statement fails
    closed: an Allow is dropped; a Deny applies to its actions whatever its resources or
    conditions say (to every action when even those cannot be read).
    """
    try:
        return parse_policy(document)
    except InvalidParameter:
        pass
    try:
        raw_statements = json.loads(document)["Statement"]
        if not isinstance(raw_statements, list):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        return Policy((_DENY_EVERYTHING,))
    return Policy(tuple(filter(None, map(_fail_closed, raw_statements))))


def _fail_closed(raw: object) -> Statement | None:
    try:
        return _parse_statement(raw, "policy")
    except InvalidParameter:
        pass
    if not isinstance(raw, dict):
        return _DENY_EVERYTHING
    if raw.get("Effect") == "Allow":
        return None
    try:
        return Statement(Effect.DENY, _string_list(raw.get("Action"), "Action"))
    except (InvalidParameter, ValueError):
        return _DENY_EVERYTHING


def evaluate(policies: Iterable[Policy], context: RequestContext) -> Decision:
    """Any applicable Deny wins; otherwise any applicable Allow; otherwise implicit deny."""
    allowed = False
    for policy in policies:
        for statement in policy.statements:
            if statement.effect is Effect.ALLOW and allowed:
                continue  # one Allow is enough; only a Deny can still change the answer
            if statement.applies_to(context):
                if statement.effect is Effect.DENY:
                    return Decision.EXPLICIT_DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def reads_the_time(policies: Iterable[Policy]) -> bool:
    """Whether a condition of ``policies`` tests g:CurrentTime: the only context value that
    changes between two requests of one caller, action and project."""
    return any(
        condition.key.lower() == "g:currenttime"
        for policy in policies
        for statement in policy.statements
        for condition in statement.conditions
    )


def require_allowed(policies: Iterable[Policy], context: RequestContext) -> None:
    """Raise PermissionDenied unless the policies allow the request."""
    if evaluate(policies, context) is not Decision.ALLOW:
        raise PermissionDenied


WORKSPACE_FULL_ACCESS = Policy((Statement(Effect.ALLOW, ("workspace:*:*",)),))
# Read-only = the List and Read access levels of workspace-api §7.1 (list*, get*, count*).
WORKSPACE_READ_ONLY_ACCESS = Policy(
    (
        Statement(
            Effect.ALLOW,
            ("workspace:*:list*", "workspace:*:get*", "workspace:*:count*", "workspace:*:show*"),
        ),
    )
)
SYSTEM_POLICIES: Mapping[str, Policy] = MappingProxyType(
    {
        "Workspace FullAccess": WORKSPACE_FULL_ACCESS,
        "Workspace ReadOnlyAccess": WORKSPACE_READ_ONLY_ACCESS,
    }
)
