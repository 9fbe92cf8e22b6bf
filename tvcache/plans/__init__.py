"""Agentic plan caching: reuse plan templates across similar tasks to cut the planner's cost.

A cheap LM names a request's intent (a keyword); an exact keyword match finds a plan template
stored after an earlier success, which a small planner adapts, so the large planner runs only on
misses. Templates live in the tvcache store beside the tool-call graph, and the Plan-Act agent's
actor queries its database through tvcache sessions. docs/plans.md tells the whole story.
"""

from tvcache.plans._agent import (
    Database,
    PlanActAgent,
    RunLog,
    SessionDatabase,
    Step,
    Task,
    extract_sql,
)
from tvcache.plans._cache import PlanCache, PlanCacheError, PlanTemplate, normalize_keyword
from tvcache.plans._embed import MiniLM, minilm_path
from tvcache.plans._http import OpenAICompatibleLM
from tvcache.plans._keywords import clean_keyword, extract_keyword
from tvcache.plans._lm import LM, Completion, Ledger, LMError, Price, Prices, Totals, Usage
from tvcache.plans._local import LocalLM, smollm2_path
from tvcache.plans._methods import (
    CostOptimal,
    Embedder,
    FullHistory,
    Method,
    Models,
    Outcome,
    PlanCaching,
    SemanticCache,
    finished,
)
from tvcache.plans._prompts import Prompt, PromptError, prompt
from tvcache.plans._remote import RemotePlanCache, TemplateStore
from tvcache.plans._templates import (
    adapt_template,
    generate_template,
    plan_steps,
    scrub,
    task_entities,
)

__all__ = [
    "LM",
    "Completion",
    "CostOptimal",
    "Database",
    "Embedder",
    "FullHistory",
    "LMError",
    "Ledger",
    "LocalLM",
    "Method",
    "MiniLM",
    "Models",
    "OpenAICompatibleLM",
    "Outcome",
    "PlanActAgent",
    "PlanCache",
    "PlanCacheError",
    "PlanCaching",
    "PlanTemplate",
    "Price",
    "Prices",
    "Prompt",
    "PromptError",
    "RemotePlanCache",
    "RunLog",
    "SemanticCache",
    "SessionDatabase",
    "Step",
    "Task",
    "TemplateStore",
    "Totals",
    "Usage",
    "adapt_template",
    "clean_keyword",
    "extract_keyword",
    "extract_sql",
    "finished",
    "generate_template",
    "minilm_path",
    "normalize_keyword",
    "plan_steps",
    "prompt",
    "scrub",
    "smollm2_path",
    "task_entities",
]
