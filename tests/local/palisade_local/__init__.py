"""Palisade's local AWS stack: moto, the real infra/ templates, and the real function binaries.

- `moto_server`: a pinned moto server on 127.0.0.1 and a free port.
- `deploy`: translates infra/*.yaml with the SAM translator, packages each function's CodeUri as `sam package`
  would, creates the stack in moto, and applies the few template properties moto's CloudFormation skips.
- `lambda_service`: reads the stack's functions, environments, event source mappings and schedules from moto,
  serves the Lambda Runtime API and runs each function's `bootstrap` as a process.
- `alarms`: evaluates the dead-letter queue alarms (moto does not) and publishes CloudWatch's notification on a
  change of state.
"""
