{{/* The release's full name: "bounce-operator" for `helm install bounce-operator`, as deploy/operator.yaml. */}}
{{- define "bounce-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bounce-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of everything the release creates, but for app.kubernetes.io/component (each object adds its own). */}}
{{- define "bounce-operator.commonLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bounce-operator.labels" -}}
{{ include "bounce-operator.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "bounce-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bounce-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bounce-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The labels the operator gives a bounce service's Service (bounce_operator.render.selector_labels). */}}
{{- define "bounce-operator.bounceServiceLabels" -}}
app.kubernetes.io/name: bounce-service
app.kubernetes.io/component: service
app.kubernetes.io/managed-by: bounce-operator
{{- end -}}
