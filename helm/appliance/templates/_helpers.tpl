{{/* The release's name for its objects (at most 40 characters, leaving room for suffixes). */}}
{{- define "appliance.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "appliance.labels" -}}
app.kubernetes.io/name: appliance
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "appliance.selector" (list . "web") */}}
{{- define "appliance.selector" -}}
app.kubernetes.io/name: appliance
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "appliance.image" -}}
{{ printf "%s:%s" .repository .tag | quote }}
{{- end -}}

{{- define "appliance.instance" -}}
{{- include "appliance.fullname" . | lower | replace "_" "-" -}}
{{- end -}}

{{- define "appliance.mongodbUri" -}}
{{- if .Values.mongodb.enabled -}}
mongodb://{{ include "appliance.fullname" . }}-mongodb:27017
{{- else -}}
{{- required "mongodb.externalUri is needed when mongodb.enabled is false" .Values.mongodb.externalUri -}}
{{- end -}}
{{- end -}}

{{- define "appliance.claim" -}}
{{- $root := index . 0 -}}{{- $volume := index . 1 -}}
{{- $given := (index $root.Values.persistence $volume).existingClaim -}}
{{- if $given }}{{ $given }}{{ else }}{{ include "appliance.fullname" $root }}-{{ $volume }}{{ end -}}
{{- end -}}

{{/* Pod-level security: non-root, seccomp RuntimeDefault (the restricted profile). */}}
{{- define "appliance.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "appliance.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The environment of every appliance process: settings, database, folders. */}}
{{- define "appliance.env" -}}
- {name: APPLIANCE_MONGODB_URI, value: {{ include "appliance.mongodbUri" . | quote }}}
- {name: APPLIANCE_MONGODB_DATABASE, value: {{ .Values.mongodb.database | quote }}}
- {name: APPLIANCE_INSTANCE, value: {{ include "appliance.instance" . | quote }}}
- {name: APPLIANCE_RUNNERS_DIR, value: /etc/appliance/runners}
- {name: APPLIANCE_SERVICES_DIR, value: {{ if or .Values.services.configMap .Values.services.files }}/etc/appliance/services{{ else }}/srv/appliance/services{{ end }}}
- {name: APPLIANCE_RUNNER_ALIASES, value: "docker=kubernetes"}
- {name: APPLIANCE_PREVIOUS_RUNNERS, value: "*=kubernetes"}
- {name: APPLIANCE_TES_RUNNER, value: "kubernetes"}
{{- range $key, $value := .Values.settings }}
- {name: {{ printf "APPLIANCE_%s" (upper $key) }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- if .Values.webhooks.enabled }}
- {name: APPLIANCE_WEBHOOK_SECRET_FILE, value: /etc/appliance/wake/webhook.secret}
- {name: APPLIANCE_WEBHOOK_PRIVATE, value: {{ .Values.webhooks.private | toString | quote }}}
{{- end }}
{{- if .Values.smtp.loginSecret }}
- {name: APPLIANCE_SMTP_CREDENTIALS_FILE, value: /etc/appliance/smtp/smtp-login}
{{- end }}
{{- with .Values.tes }}
{{- if .enabled }}
- {name: APPLIANCE_TES_ENABLED, value: "true"}
- {name: APPLIANCE_TES_TOKENS_FILE, value: /etc/appliance/tes-clients/tes-clients}
- {name: APPLIANCE_TES_IMAGES, value: {{ join "," .images | quote }}}
- {name: APPLIANCE_TES_NETWORK_IMAGES, value: {{ join "," .networkImages | quote }}}
{{- if .s3.endpoint }}
- {name: APPLIANCE_TES_S3_ENDPOINT, value: {{ .s3.endpoint | quote }}}
- {name: APPLIANCE_TES_S3_REGION, value: {{ .s3.region | quote }}}
- {name: APPLIANCE_TES_S3_ROOTS, value: {{ join "," .s3.roots | quote }}}
- {name: APPLIANCE_TES_S3_VIRTUAL_HOSTS, value: {{ .s3.virtualHosts | toString | quote }}}
- {name: APPLIANCE_TES_S3_CREDENTIALS_FILE, value: /etc/appliance/tes-s3/s3-keys}
{{- end }}
{{- end }}
{{- end }}
- name: APPLIANCE_OPERATOR_TOKEN_SHA256
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret | default (printf "%s-secrets" (include "appliance.fullname" .)) }}
      key: operator_token_sha256
      optional: true
{{- end -}}

{{- define "appliance.configVolumes" -}}
- name: runners
  configMap: {name: {{ .Values.runnersConfigMap | default (printf "%s-runners" (include "appliance.fullname" .)) }}}
{{- if .Values.services.configMap }}
- name: services
  configMap: {name: {{ .Values.services.configMap }}}
{{- else if .Values.services.files }}
- name: services
  configMap: {name: {{ include "appliance.fullname" . }}-services}
{{- end }}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}

{{/* The wake-up key (web and scheduler only): readable by the pod's group (fsGroup). */}}
{{- define "appliance.wakeVolume" -}}
- name: wake
  secret: {secretName: {{ include "appliance.fullname" . }}-wake, defaultMode: 0440}
{{- end -}}

{{- define "appliance.wakeMount" -}}
- {name: wake, mountPath: /etc/appliance/wake, readOnly: true}
{{- end -}}

{{- define "appliance.configMounts" -}}
- {name: runners, mountPath: /etc/appliance/runners, readOnly: true}
{{- if or .Values.services.configMap .Values.services.files }}
- {name: services, mountPath: /etc/appliance/services, readOnly: true}
{{- end }}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{/* TES (docs/tes.md): the clients file for the web process, the S3 keys for the
scheduler, each from the site's own Secret or the one the chart makes (<release>-tes). */}}
{{- define "appliance.tesSecret" -}}
{{ include "appliance.fullname" . }}-tes
{{- end -}}

{{- define "appliance.tesClientsVolume" -}}
{{- if .Values.tes.enabled }}
- name: tes-clients
  secret:
    secretName: {{ .Values.tes.clientsSecret | default (include "appliance.tesSecret" .) }}
    items: [{key: tes-clients, path: tes-clients}]
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "appliance.tesClientsMount" -}}
{{- if .Values.tes.enabled }}
- {name: tes-clients, mountPath: /etc/appliance/tes-clients, readOnly: true}
{{- end }}
{{- end -}}

{{- define "appliance.tesS3Volume" -}}
{{- if and .Values.tes.enabled .Values.tes.s3.endpoint }}
- name: tes-s3
  secret:
    secretName: {{ .Values.tes.s3.existingSecret | default (include "appliance.tesSecret" .) }}
    items: [{key: s3-keys, path: s3-keys}]
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "appliance.smtpVolume" -}}
{{- if .Values.smtp.loginSecret }}
- name: smtp-login
  secret:
    secretName: {{ .Values.smtp.loginSecret }}
    items: [{key: smtp-login, path: smtp-login}]
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "appliance.smtpMount" -}}
{{- if .Values.smtp.loginSecret }}
- {name: smtp-login, mountPath: /etc/appliance/smtp, readOnly: true}
{{- end }}
{{- end -}}

{{- define "appliance.tesS3Mount" -}}
{{- if and .Values.tes.enabled .Values.tes.s3.endpoint }}
- {name: tes-s3, mountPath: /etc/appliance/tes-s3, readOnly: true}
{{- end }}
{{- end -}}
