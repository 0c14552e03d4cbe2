const source = new EventSource(
  `https://api.praxiomai.xyz/api/tasks/${taskId}/progress`,
  { withCredentials: true },
);

source.onmessage = (event) => {
  const data = JSON.parse(event.data);
  updateUI({
    phase: data.phase,
    pct: data.progress_pct,
    message: data.message,
  });

  if (["completed", "failed", "cancelled"].includes(data.status)) {
    source.close();
    if (data.status === "completed") {
      // Final payload is already in data.result_data,
      // or fetch via GET /api/tasks/{taskId} for the canonical row
      onComplete(data.result_data);
    } else {
      onError(data.error || `Task ${data.status}`);
    }
  }
};

source.onerror = (err) => {
  console.warn("SSE connection error — will auto-reconnect", err);
  // EventSource reconnects automatically; no action needed
};
