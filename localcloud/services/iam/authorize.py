"""Who a caller is (a role session with the role's policies) and whether a call is allowed."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localcloud.services.iam.evaluator import Evaluator, evaluator
from localcloud.services.iam.request_context import Check, required_checks


def session_arn(role_arn: str, session: str) -> str:
    """arn:aws:iam::A:role/PATH/NAME -> arn:aws:sts::A:assumed-role/NAME/SESSION."""
    head, _, resource = role_arn.partition(":role/")
    partition, account = head.split(":")[1], head.split(":")[4]
    return f"arn:{partition}:sts::{account}:assumed-role/{resource.rsplit('/', 1)[-1]}/{session}"


def access_key_for(role_arn: str, session: str) -> str:
    """A temporary access key id (ASIA...) that names this role session locally."""
    digest = hashlib.sha256(f"{role_arn}\n{session}".encode()).hexdigest().upper()
    return f"ASIA{digest[:16]}"


@dataclass(frozen=True)
class Principal:
    """A role session: the role's identity policies decide what it may do."""

    role_arn: str
    session: str
    policies: tuple[Mapping[str, Any], ...] = field(hash=False)  # {"name", "policy"} each

    @property
    def arn(self) -> str:
        return session_arn(self.role_arn, self.session)

    @property
    def account(self) -> str:
        return self.role_arn.split(":")[4]

    @property
    def access_key(self) -> str:
        return access_key_for(self.role_arn, self.session)


@dataclass(frozen=True)
class Denial:
    principal: str
    action: str
    resource: str
    explicit: bool = False
    validation: bool = False  # the service's own check of the caller (Check.validation)

    @property
    def message(self) -> str:
        """AWS's wording (S3 quotes the resource: see ``s3_message``)."""
        return self._message(self.resource)

    @property
    def s3_message(self) -> str:
        return self._message(f'"{self.resource}"')

    def _message(self, resource: str) -> str:
        on = "" if self.resource == "*" else f" on resource: {resource}"
        why = (
            "with an explicit deny in an identity-based policy"
            if self.explicit
            else f"because no identity-based policy allows the {self.action} action"
        )
        return f"User: {self.principal} is not authorized to perform: {self.action}{on} {why}"


class Authorizer:
    """Evaluates checks for principals, caching decisions (policies do not change at run time)."""

    def __init__(self, reference: Evaluator | None = None) -> None:
        self._reference = reference
        self._cache: dict[tuple[str, str, str, str], str] = {}
        self._lock = threading.Lock()

    @property
    def reference(self) -> Evaluator:
        return self._reference or evaluator()

    def decide(self, principal: Principal, check: Check) -> str:
        policies_key = hashlib.sha256(
            json.dumps(principal.policies, sort_keys=True).encode()
        ).hexdigest()
        context = json.dumps(dict(check.context), sort_keys=True)
        key = (policies_key, check.action, check.resource, context)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self.reference.simulate(
            principal=principal.arn,
            account=principal.account,
            action=check.action,
            resource=check.resource,
            context=dict(check.context),
            policies=[dict(p) for p in principal.policies],
        )
        with self._lock:
            self._cache[key] = result
        return result

    def service_allowed(
        self,
        service: str,
        account: str,
        check: Check,
        resource_policy: Mapping[str, Any],
    ) -> bool:
        """Whether a service principal ("cloudwatch.amazonaws.com") may act on a resource of
        ``account`` under its resource policy (a topic's or queue's access policy)."""
        key = (
            service,
            hashlib.sha256(json.dumps(resource_policy, sort_keys=True).encode()).hexdigest(),
            check.action,
            f"{check.resource} {json.dumps(dict(check.context), sort_keys=True)}",
        )
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = self.reference.simulate(
                principal=service,
                account=account,
                action=check.action,
                resource=check.resource,
                context=dict(check.context),
                policies=[],
                resource_policy=dict(resource_policy),
            )
            with self._lock:
                self._cache[key] = cached
        return cached == "Allowed"

    def first_denial(self, principal: Principal, checks: Iterable[Check]) -> Denial | None:
        for check in checks:
            result = self.decide(principal, check)
            if result != "Allowed":
                return Denial(
                    principal.arn,
                    check.action,
                    check.resource,
                    result == "ExplicitlyDenied",
                    check.validation,
                )
        return None

    def authorize_call(
        self,
        principal: Principal,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        *,
        region: str,
    ) -> Denial | None:
        checks = required_checks(
            service,
            operation,
            params,
            region=region,
            account=principal.account,
            reference=self.reference,
        )
        return self.first_denial(principal, checks)


def policy_documents(
    named: Sequence[tuple[str, Mapping[str, Any]]],
) -> tuple[Mapping[str, Any], ...]:
    """[(name, document)] -> the simulator's identity-policy entries."""
    return tuple({"name": name, "policy": dict(doc)} for name, doc in named)
