//! `mdops-aws`: the AWS adapters (SQS queue, DynamoDB state) behind the ports of `mdops-core`.
//!
//! (Being built: see the queue and state issue.)
