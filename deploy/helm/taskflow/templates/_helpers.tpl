{{/* The release's base name. */}}
{{- define "taskflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "taskflow.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "taskflow.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "taskflow.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "taskflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taskflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the database URL and the other secrets: the chart's or the user's. */}}
{{- define "taskflow.secretName" -}}
{{- printf "%s-secrets" (include "taskflow.fullname" .) -}}
{{- end -}}

{{/* Environment every taskflow container gets: settings from the ConfigMap, secrets by key. */}}
{{- define "taskflow.env" -}}
{{- if not (or .Values.database.existingSecret (include "taskflow.databaseUrl" .)) }}
{{- fail "taskflow needs a database: set database.url, database.existingSecret or postgresql.enabled" }}
{{- end -}}
- name: TASKFLOW_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | default (include "taskflow.secretName" .) }}
      key: database-url
{{- if or .Values.kafka.password .Values.kafka.existingSecret }}
- name: TASKFLOW_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.existingSecret | default (include "taskflow.secretName" .) }}
      key: kafka-password
{{- end }}
{{- if or .Values.jwt.secret .Values.jwt.existingSecret }}
- name: TASKFLOW_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwt.existingSecret | default (include "taskflow.secretName" .) }}
      key: jwt-secret
{{- end }}
{{- if or .Values.llm.apiKey .Values.llm.existingSecret }}
- name: TASKFLOW_LLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.llm.existingSecret | default (include "taskflow.secretName" .) }}
      key: llm-api-key
{{- end }}
{{- end -}}

{{- define "taskflow.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/taskflow/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "taskflow.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret }}
{{- end }}
{{- end -}}

{{/* The database URL the chart writes into its Secret: the one given, else the in-cluster PostgreSQL's. */}}
{{- define "taskflow.databaseUrl" -}}
{{- if .Values.database.url -}}
{{- .Values.database.url -}}
{{- else if .Values.postgresql.enabled -}}
{{- printf "postgres://taskflow:%s@%s-postgresql:5432/taskflow" .Values.postgresql.password (include "taskflow.fullname" .) -}}
{{- end -}}
{{- end -}}
