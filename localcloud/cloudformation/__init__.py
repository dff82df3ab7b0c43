"""CloudFormation: template.yaml read and resolved, then deployed as a stack."""
