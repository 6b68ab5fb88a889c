"""IAM policy language: validation, wildcards, conditions and Deny > Allow > implicit deny."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from imagejobs.domain.errors import InvalidParameter, PermissionDenied
from imagejobs.iam.policy import (
    SYSTEM_POLICIES,
    WORKSPACE_FULL_ACCESS,
    WORKSPACE_READ_ONLY_ACCESS,
    Decision,
    Policy,
    RequestContext,
    evaluate,
    parse_policy,
    reads_the_time,
    require_allowed,
    stored_policy,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def context(action: str = "workspace:images:listImageJobs", **values: Any) -> RequestContext:
    defaults: dict[str, Any] = {
        "current_time": NOW,
        "user_id": "u-1",
        "user_name": "alice",
        "domain_name": "acme",
        "project_name": "ap-southeast-1",
    }
    return RequestContext(action, **{**defaults, **values})


def policy(*statements: dict[str, Any]) -> Policy:
    return parse_policy({"Version": "1.1", "Statement": list(statements)})


def allow(*actions: str, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": list(actions), **extra}


def deny(*actions: str, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": list(actions), **extra}


def when(operator: str, key: str, *values: Any) -> dict[str, Any]:
    return {"Condition": {operator: {key: list(values)}}}


# --- system policies -----------------------------------------------------------------------

READ_ACTIONS = [
    "workspace:images:listImageJobs",
    "workspace:images:getImageJob",
    "workspace:imageServer:listImageSubJobs",
    "workspace:imageServer:countImageSubJobs",
    "workspace:imageServer:list",
    "workspace:imageServer:get",
    "workspace:imageServer:listLatestAttachedApp",
]
WRITE_ACTIONS = [
    "workspace:imageServer:create",
    "workspace:imageServer:batchDelete",
    "workspace:imageServer:recreate",
    "workspace:imageServer:update",
    "workspace:imageServer:attachApp",
    "workspace:imageServer:deleteImageSubJobs",
    "workspace:imageServer:batchDeleteImageSubJobs",
]


@pytest.mark.parametrize("action", READ_ACTIONS)
def test_read_only_access_allows_list_and_read_actions(action: str) -> None:
    assert evaluate([WORKSPACE_READ_ONLY_ACCESS], context(action)) is Decision.ALLOW


@pytest.mark.parametrize("action", WRITE_ACTIONS)
def test_read_only_access_does_not_allow_writes(action: str) -> None:
    assert evaluate([WORKSPACE_READ_ONLY_ACCESS], context(action)) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize("action", READ_ACTIONS + WRITE_ACTIONS)
def test_full_access_allows_every_workspace_action(action: str) -> None:
    assert evaluate([WORKSPACE_FULL_ACCESS], context(action)) is Decision.ALLOW


def test_full_access_stays_within_workspace() -> None:
    assert evaluate([WORKSPACE_FULL_ACCESS], context("ims:images:list")) is Decision.IMPLICIT_DENY


def test_system_policies_are_listed_by_name() -> None:
    assert dict(SYSTEM_POLICIES) == {
        "Workspace FullAccess": WORKSPACE_FULL_ACCESS,
        "Workspace ReadOnlyAccess": WORKSPACE_READ_ONLY_ACCESS,
    }
    for system_policy in SYSTEM_POLICIES.values():
        assert parse_policy(system_policy.to_document()) == system_policy


# --- Deny > Allow > implicit deny ----------------------------------------------------------


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        ([], Decision.IMPLICIT_DENY),
        ([[allow("workspace:images:listImageJobs")]], Decision.ALLOW),
        ([[allow("workspace:images:getImageJob")]], Decision.IMPLICIT_DENY),
        ([[deny("workspace:images:listImageJobs")]], Decision.EXPLICIT_DENY),
        (
            [[allow("workspace:*:*"), deny("workspace:images:listImageJobs")]],
            Decision.EXPLICIT_DENY,
        ),
        ([[deny("workspace:images:list*")], [allow("workspace:*:*")]], Decision.EXPLICIT_DENY),
        ([[allow("workspace:*:*")], [deny("workspace:images:list*")]], Decision.EXPLICIT_DENY),
        ([[allow("workspace:*:*")], [deny("workspace:images:get*")]], Decision.ALLOW),
        # A Deny whose condition does not hold does not apply.
        (
            [
                [
                    allow("workspace:*:*"),
                    deny("workspace:*:*", **when("StringEquals", "g:UserName", "bob")),
                ]
            ],
            Decision.ALLOW,
        ),
    ],
)
def test_deny_beats_allow_beats_implicit_deny(
    statements: list[list[dict[str, Any]]], expected: Decision
) -> None:
    policies = [policy(*group) for group in statements]
    assert evaluate(policies, context()) is expected


def test_require_allowed_raises_permission_denied() -> None:
    require_allowed([WORKSPACE_FULL_ACCESS], context())
    with pytest.raises(PermissionDenied) as caught:
        require_allowed([WORKSPACE_READ_ONLY_ACCESS], context("workspace:imageServer:create"))
    assert caught.value.status == 403
    with pytest.raises(PermissionDenied):
        require_allowed([policy(deny("*:*:*")), WORKSPACE_FULL_ACCESS], context())


# --- action wildcards ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("workspace:images:listImageJobs", "workspace:images:listImageJobs", True),
        ("workspace:images:list*", "workspace:images:listImageJobs", True),
        ("workspace:images:list*", "workspace:images:getImageJob", False),
        ("workspace:*:get*", "workspace:imageServer:get", True),
        ("workspace:image*:*Jobs", "workspace:imageServer:listImageSubJobs", True),
        ("workspace:image*:*Jobs", "workspace:imageServer:get", False),
        ("workspace:*:*", "workspace:imageServer:create", True),
        ("*:*:*", "ims:images:list", True),
        ("work*:*:*", "workspace:images:list", True),
        ("workspace:*:*", "workspaceapp:images:list", False),
        ("workspace:**:l*s*t*", "workspace:images:listImageJobs", True),
        # resource type and operation are case-insensitive
        ("workspace:IMAGES:LISTIMAGEJOBS", "workspace:images:listImageJobs", True),
        ("workspace:images:listimagejobs", "workspace:images:listImageJobs", True),
        # `*` stays inside its segment
        ("workspace:*", "workspace:images:list", None),
        # regex metacharacters are literal characters
        ("workspace:images:list.*", "workspace:images:listImageJobs", False),
        ("workspace:images:list.*", "workspace:images:list.all", True),
        ("workspace:(images|jobs):get*", "workspace:images:getImageJob", False),
        ("workspace:images:[gl]*", "workspace:images:getImageJob", False),
        ("workspace:images:get.+", "workspace:images:getImageJob", False),
        ("workspace:images:^get.*$", "workspace:images:getImageJob", False),
        ("workspace:images:get\\w+", "workspace:images:getImageJob", False),
        # `?` is not a wildcard in actions
        ("workspace:images:getImageJo?", "workspace:images:getImageJob", False),
    ],
)
def test_action_patterns(pattern: str, action: str, matches: bool | None) -> None:
    if matches is None:
        with pytest.raises(InvalidParameter):
            policy(allow(pattern))
        return
    expected = Decision.ALLOW if matches else Decision.IMPLICIT_DENY
    assert evaluate([policy(allow(pattern))], context(action)) is expected


def test_request_action_must_have_three_segments() -> None:
    with pytest.raises(ValueError, match="service:resourceType:operation"):
        RequestContext("workspace:list", current_time=NOW)


# --- conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "key", "values", "context_values", "holds"),
    [
        ("StringEquals", "g:UserName", ["alice"], {}, True),
        ("StringEquals", "g:UserName", ["Alice"], {}, False),
        ("StringEquals", "g:UserName", ["bob", "alice"], {}, True),
        ("StringEquals", "g:username", ["alice"], {}, True),  # keys are case-insensitive
        ("StringNotEquals", "g:UserName", ["bob"], {}, True),
        ("StringNotEquals", "g:UserName", ["bob", "alice"], {}, False),
        ("StringEqualsIgnoreCase", "g:DomainName", ["ACME"], {}, True),
        ("StringEqualsIgnoreCase", "g:DomainName", ["acme-2"], {}, False),
        ("StringNotEqualsIgnoreCase", "g:DomainName", ["ACME"], {}, False),
        ("StringNotEqualsIgnoreCase", "g:DomainName", ["other"], {}, True),
        ("StringLike", "g:ProjectName", ["ap-*"], {}, True),
        ("StringLike", "g:ProjectName", ["ap-southeast-?"], {}, True),
        ("StringLike", "g:ProjectName", ["ap-southeast-??"], {}, False),
        ("StringLike", "g:ProjectName", ["*-east-*"], {}, False),
        ("StringLike", "g:ProjectName", ["*-southeast-*"], {}, True),
        ("StringLike", "g:UserName", ["a.*"], {}, False),  # "." is literal
        ("StringLike", "g:UserName", ["a.*"], {"user_name": "a.b"}, True),
        ("StringLike", "g:UserName", ["[a]lice"], {}, False),
        ("StringLike", "g:UserName", ["al(i|x)ce"], {}, False),
        ("StringLike", "g:UserName", ["al+ce"], {"user_name": "al+ce"}, True),
        ("StringNotLike", "g:ProjectName", ["cn-*"], {}, True),
        ("StringNotLike", "g:ProjectName", ["ap-*"], {}, False),
        ("StringStartWith", "g:UserId", ["u-"], {}, True),
        ("StringStartWith", "g:UserId", ["x-"], {}, False),
        ("StringEndWith", "g:UserName", ["ice"], {}, True),
        ("StringEndWith", "g:UserName", ["bob"], {}, False),
        ("DateLessThan", "g:CurrentTime", ["2025-06-01T12:00:01Z"], {}, True),
        ("DateLessThan", "g:CurrentTime", ["2025-06-01T12:00:00Z"], {}, False),
        ("DateLessThanEquals", "g:CurrentTime", ["2025-06-01T12:00:00Z"], {}, True),
        ("DateGreaterThan", "g:CurrentTime", ["2025-06-01T11:59:59Z"], {}, True),
        ("DateGreaterThan", "g:CurrentTime", ["2025-06-01T20:00:00+08:00"], {}, False),
        ("DateGreaterThanEquals", "g:CurrentTime", ["2025-06-01T20:00:00+08:00"], {}, True),
        ("DateGreaterThan", "g:CurrentTime", ["2025-06-01T11:00:00"], {}, True),  # naive = UTC
        ("Bool", "g:MFAPresent", ["true"], {"mfa_present": True}, True),
        ("Bool", "g:MFAPresent", [True], {"mfa_present": True}, True),
        ("Bool", "g:MFAPresent", ["true"], {"mfa_present": False}, False),
        ("Bool", "g:MFAPresent", ["false"], {"mfa_present": False}, True),
        ("IsNullOrEmpty", "g:DomainId", ["true"], {}, True),
        ("IsNullOrEmpty", "g:UserName", ["true"], {}, False),
        ("IsNullOrEmpty", "g:UserName", ["false"], {}, True),
        # An absent key satisfies only the IfExists form, negated operators included.
        ("StringEquals", "g:DomainId", ["d-1"], {}, False),
        ("StringNotEquals", "g:DomainId", ["d-1"], {}, False),
        ("StringEqualsIfExists", "g:DomainId", ["d-1"], {}, True),
        ("StringNotEqualsIfExists", "g:DomainId", ["d-1"], {}, True),
        ("StringEqualsIfExists", "g:UserName", ["bob"], {}, False),
        ("StringEndWithIfExists", "g:UserName", ["ice"], {}, True),
        # No request of this service is ever MFA-authenticated.
        ("Bool", "g:MFAPresent", ["true"], {}, False),
        ("Bool", "g:MFAPresent", ["false"], {}, True),
        ("BoolIfExists", "g:MFAPresent", ["true"], {"mfa_present": None}, True),
        # AnyOf forms behave like the plain operator for single-valued keys.
        ("StringEqualsAnyOf", "g:UserName", ["bob", "alice"], {}, True),
        ("StringNotEqualsAnyOfIfExists", "g:UserName", ["alice"], {}, False),
    ],
)
def test_condition_operators(
    operator: str, key: str, values: list[Any], context_values: dict[str, Any], holds: bool
) -> None:
    statement = allow("workspace:*:*", Condition={operator: {key: values}})
    expected = Decision.ALLOW if holds else Decision.IMPLICIT_DENY
    assert evaluate([policy(statement)], context(**context_values)) is expected


def test_every_condition_must_hold() -> None:
    statement = allow(
        "workspace:*:*",
        Condition={
            "StringEquals": {"g:UserName": ["alice"], "g:DomainName": ["acme"]},
            "StringLike": {"g:ProjectName": ["ap-*"]},
        },
    )
    assert evaluate([policy(statement)], context()) is Decision.ALLOW
    assert evaluate([policy(statement)], context(domain_name="other")) is Decision.IMPLICIT_DENY


def test_deny_outside_office_hours() -> None:
    statement = deny(
        "workspace:imageServer:*",
        Condition={"DateGreaterThan": {"g:CurrentTime": ["2025-06-01T18:00:00Z"]}},
    )
    policies = [policy(statement), WORKSPACE_FULL_ACCESS]
    action = "workspace:imageServer:create"
    assert evaluate(policies, context(action)) is Decision.ALLOW
    late = context(action, current_time=datetime(2025, 6, 1, 19, tzinfo=UTC))
    assert evaluate(policies, late) is Decision.EXPLICIT_DENY


def test_string_like_with_many_wildcards_stays_fast() -> None:
    # A backtracking regex would take minutes here; the chunk matcher is linear per chunk.
    statement = allow("workspace:*:*", **when("StringLike", "g:UserName", "*a" * 12 + "*b"))
    assert evaluate([policy(statement)], context(user_name="a" * 5000)) is Decision.IMPLICIT_DENY
    assert evaluate([policy(statement)], context(user_name="a" * 5000 + "b")) is Decision.ALLOW


# --- what a policy may say: only what the service evaluates -----------------------------


def test_resource_star_means_every_resource() -> None:
    statement = allow("workspace:imageServer:*", Resource=["*"])
    assert evaluate([policy(statement)], context("workspace:imageServer:get")) is Decision.ALLOW


@pytest.mark.parametrize(
    "resource", ["workspace:*:d-1:imageServer:srv-1", "workspace:*:*:*:*", "*:*:*:*:*", "srv-1"]
)
def test_resources_other_than_star_are_refused(resource: str) -> None:
    # Accepted and ignored, such an element would grant what it seems to withhold.
    with pytest.raises(InvalidParameter) as caught:
        policy(allow("workspace:imageServer:*", Resource=["*", resource]))
    assert caught.value.message.startswith(
        "The parameter is invalid: policy.Statement[0].Resource[1] is not supported: "
        "WorkspaceApp image-job actions have no resource-level permissions"
    )


@pytest.mark.parametrize("key", ["g:SourceIp", "g:EnterpriseProjectId", "workspace:Flavor"])
def test_condition_keys_the_service_never_sets_are_refused(key: str) -> None:
    # A Deny on such a key would never apply.
    with pytest.raises(InvalidParameter) as caught:
        policy(deny("workspace:*:*", **when("StringNotEquals", key, "x")))
    assert f"Condition.StringNotEquals.{key} condition key {key!r} is not supported" in (
        caught.value.message
    )
    assert "g:CurrentTime, g:DomainId" in caught.value.message


STORED_ALLOW_ONE_SERVER = {
    "Effect": "Allow",
    "Action": ["workspace:*:*"],
    "Resource": ["workspace:*:*:imageServer:srv-1"],
}
STORED_DENY_OUTSIDE_OFFICE = {
    "Effect": "Deny",
    "Action": ["workspace:imageServer:*"],
    "Condition": {"NotIpAddress": {"g:SourceIp": ["10.0.0.0/8"]}},
}


@pytest.mark.parametrize(
    ("statements", "action", "expected"),
    [
        # An Allow the service cannot evaluate is dropped: it grants nothing.
        ([STORED_ALLOW_ONE_SERVER], "workspace:images:listImageJobs", Decision.IMPLICIT_DENY),
        # A Deny it cannot evaluate applies to its actions unconditionally...
        (
            [allow("workspace:*:*"), STORED_DENY_OUTSIDE_OFFICE],
            "workspace:imageServer:create",
            Decision.EXPLICIT_DENY,
        ),
        # ...and only to them; valid statements keep their meaning.
        (
            [allow("workspace:*:*"), STORED_DENY_OUTSIDE_OFFICE],
            "workspace:images:listImageJobs",
            Decision.ALLOW,
        ),
        # A Deny whose actions cannot be read denies everything.
        (
            [allow("workspace:*:*"), {"Effect": "Deny", "Action": ["bad"], "Resource": ["x"]}],
            "workspace:images:listImageJobs",
            Decision.EXPLICIT_DENY,
        ),
    ],
)
def test_stored_policies_the_rules_now_refuse_fail_closed(
    statements: list[dict[str, Any]], action: str, expected: Decision
) -> None:
    stored = stored_policy(json.dumps({"Version": "1.1", "Statement": statements}))
    assert evaluate([stored], context(action)) is expected


@pytest.mark.parametrize("document", ["{not json", "[]", '{"Version": "1.1"}', '{"Statement": 3}'])
def test_unreadable_stored_policies_deny_everything(document: str) -> None:
    assert evaluate([stored_policy(document)], context()) is Decision.EXPLICIT_DENY


def test_valid_stored_policies_read_as_created() -> None:
    document = json.dumps({"Version": "1.1", "Statement": [allow("workspace:images:*")]})
    assert stored_policy(document) == parse_policy(document)


# --- validation ----------------------------------------------------------------------------

VALID_STATEMENT: dict[str, Any] = {"Effect": "Allow", "Action": ["workspace:*:*"]}


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("{not json", "policy is not valid JSON"),
        ("[]", "policy must be a JSON object"),
        ({"Statement": [VALID_STATEMENT]}, "policy.Version"),
        ({"Version": "1.0", "Statement": [VALID_STATEMENT]}, "policy.Version"),
        ({"Version": 1.1, "Statement": [VALID_STATEMENT]}, "policy.Version"),
        ({"Version": "1.1"}, "policy.Statement must be a non-empty list"),
        ({"Version": "1.1", "Statement": []}, "policy.Statement must be a non-empty list"),
        ({"Version": "1.1", "Statement": VALID_STATEMENT}, "policy.Statement must be"),
        ({"Version": "1.1", "Statement": [VALID_STATEMENT], "Depends": []}, "Depends"),
        ({"Version": "1.1", "Statement": ["Allow"]}, "policy.Statement[0] must be an object"),
    ],
)
def test_invalid_documents_are_rejected(document: Any, where: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_policy(document)
    assert caught.value.code == "WKS.00211102"
    assert where in caught.value.message


@pytest.mark.parametrize(
    ("statement", "where"),
    [
        ({"Action": ["workspace:*:*"]}, "Statement[1].Effect must be Allow or Deny"),
        ({"Effect": "allow", "Action": ["workspace:*:*"]}, "Statement[1].Effect"),
        ({"Effect": "Allow"}, "Statement[1].Action is required"),
        ({"Effect": "Allow", "Action": []}, "Statement[1].Action must not be empty"),
        ({"Effect": "Allow", "Action": [7]}, "Statement[1].Action[0] must be a string"),
        ({"Effect": "Allow", "Action": ["workspace:list"]}, "Statement[1].Action[0]"),
        ({"Effect": "Allow", "Action": ["a:b:c:d"]}, "Statement[1].Action[0]"),
        ({"Effect": "Allow", "Action": ["Workspace:*:*"]}, "lower-case service"),
        ({"Effect": "Allow", "Action": ["workspace:images:list Jobs"]}, "Action[0]"),
        ({"Effect": "Allow", "Action": ["workspace::list"]}, "Action[0]"),
        ({"Effect": "Allow", "Action": ["workspace:*:" + "x" * 600]}, "longer than"),
        ({"Effect": "Allow", "NotAction": ["workspace:*:*"]}, "unsupported elements NotAction"),
        ({**VALID_STATEMENT, "Sid": 3}, "Statement[1].Sid must be a string"),
        ({**VALID_STATEMENT, "Resource": ["bucket"]}, "Statement[1].Resource[0]"),
        ({**VALID_STATEMENT, "Condition": []}, "Statement[1].Condition must be an object"),
        ({**VALID_STATEMENT, "Condition": {"StringEquals": {}}}, "Condition.StringEquals"),
        ({**VALID_STATEMENT, **when("StringMatches", "g:UserName", "x")}, "not supported"),
        ({**VALID_STATEMENT, **when("StringEquals", "g:UserName")}, "must not be empty"),
        ({**VALID_STATEMENT, **when("StringEquals", "g:UserName", 5)}, "must be a string"),
        ({**VALID_STATEMENT, **when("StringEquals", "g:UserName", True)}, "must be a string"),
        ({**VALID_STATEMENT, **when("StringEquals", "UserName", "x")}, "must look like g:"),
        ({**VALID_STATEMENT, **when("Bool", "g:MFAPresent", "yes")}, "must be true or false"),
        ({**VALID_STATEMENT, **when("DateLessThan", "g:CurrentTime", "soon")}, "ISO 8601"),
    ],
)
def test_invalid_statements_are_rejected(statement: dict[str, Any], where: str) -> None:
    document = {"Version": "1.1", "Statement": [VALID_STATEMENT, statement]}
    with pytest.raises(InvalidParameter) as caught:
        parse_policy(document, parameter="role.policy")
    assert caught.value.message.startswith("The parameter is invalid: role.policy.Statement[1]")
    assert where in caught.value.message


def test_json_text_and_bytes_are_accepted_and_round_trip() -> None:
    document = {
        "Version": "1.1",
        "Statement": [
            {
                "Sid": "office",
                "Effect": "Deny",
                "Action": ["workspace:imageServer:*"],
                "Resource": ["*"],
                "Condition": {
                    "StringNotEquals": {"g:UserName": ["alice", "bob"]},
                    "Bool": {"g:MFAPresent": ["true"]},
                },
            }
        ],
    }
    from_text = parse_policy(json.dumps(document))
    assert from_text == parse_policy(json.dumps(document).encode())
    assert from_text.to_document() == document
    assert parse_policy(from_text.to_document()) == from_text


def test_reads_the_time_names_policies_whose_answer_can_change_with_the_clock() -> None:
    """IamAccess remembers decisions except where a condition tests g:CurrentTime."""
    allow = {"Effect": "Allow", "Action": ["workspace:*:*"]}
    by_name = {**allow, "Condition": {"StringEquals": {"g:UserName": ["alice"]}}}
    by_time = {**allow, "Condition": {"DateLessThan": {"g:currenttime": ["2030-01-01T00:00:00Z"]}}}
    assert not reads_the_time([policy(allow), policy(by_name)])
    assert reads_the_time([policy(allow), policy(by_name, by_time)])
    assert not reads_the_time([])
