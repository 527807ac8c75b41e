// GraphiQL opens on three tabs that show the whole flow. It is rendered by
// @graphql-yoga/render-graphiql, whose page carries its own scripts: no CDN,
// so it works offline.
export const graphiqlTabs = [
  {
    query: `# Create a job. GraphiQL cannot attach files, so send this one with curl
# (a GraphQL multipart request):
#
#   curl http://localhost:4000/graphql -H "authorization: Bearer $MURMUR_API_KEY" -H 'graphql-preflight: 1' \\
#     -F operations='{"query":"mutation ($file: File!) { createJob(input: {file: $file}) { id status } }","variables":{"file":null}}' \\
#     -F map='{"0":["variables.file"]}' \\
#     -F 0=@audio.wav
#
# Then cancel or retry it here:
mutation Cancel($id: ID!) {
  cancelJob(id: $id) { id status }
}
`,
    variables: '{ "id": "paste-a-job-id" }',
  },
  {
    query: `# The newest jobs, page by page (pass pageInfo.endCursor as \`after\`), and the queue at a glance.
query Jobs {
  jobs(first: 10) {
    edges { cursor node { id status progress createdAt input { filename durationSeconds } } }
    pageInfo { hasNextPage endCursor }
  }
  queue { pending processing done failed oldestPendingAgeSeconds workers }
}
`,
  },
  {
    query: `# One job, with its transcript once it is done.
query Job($id: ID!) {
  job(id: $id) {
    id status attempts progress
    input { filename bytes durationSeconds }
    result { text language model segments { start end text } srt vtt }
    error { code message }
  }
}
`,
    variables: '{ "id": "paste-a-job-id" }',
  },
  {
    query: `# Follow a job: its state now, then every change until it finishes.
subscription Follow($id: ID!) {
  jobUpdated(id: $id) {
    id status progress attempts
    result { text model }
    error { code message }
  }
}
`,
    variables: '{ "id": "paste-a-job-id" }',
  },
];
