{{/* Labels every control-plane object carries (upstream: app=vcluster, release=N). */}}
{{- define "vc.labels" -}}
app: vcluster
chart: vcluster-{{ .Chart.Version }}
release: {{ .Release.Name }}
heritage: {{ .Release.Service }}
{{- end -}}

{{/* A PVC backs the control plane unless persistence is explicitly off (upstream _persistence.tpl). */}}
{{- define "vc.persistent" -}}
{{- $enabled := .Values.controlPlane.statefulSet.persistence.volumeClaim.enabled -}}
{{- if or (eq (toString $enabled) "true") (eq (toString $enabled) "auto") -}}true{{- end -}}
{{- end -}}

{{- define "vc.workloadServiceAccount" -}}
{{- .Values.controlPlane.advanced.workloadServiceAccount.name | default (printf "vc-workload-%s" .Release.Name) -}}
{{- end -}}

{{- define "vc.serviceAccount" -}}
{{- .Values.controlPlane.advanced.serviceAccount.name | default (printf "vc-%s" .Release.Name) -}}
{{- end -}}

{{/* Host namespaces named by sync.fromHost.secrets mappings ("" = the release namespace). */}}
{{- define "vc.fromHostSecretNamespaces" -}}
{{- $namespaces := list -}}
{{- range $from, $to := .Values.sync.fromHost.secrets.mappings.byName -}}
{{- $ns := (splitList "/" $from | first) | default $.Release.Namespace -}}
{{- $namespaces = append $namespaces $ns -}}
{{- end -}}
{{- $namespaces | uniq | toJson -}}
{{- end -}}

{{- /* upstream chart/templates/_rbac.tpl vcluster.createClusterRole, for the keys this stand-in knows */ -}}
{{- define "vc.createClusterRole" -}}
{{- $enabled := toString .Values.rbac.clusterRole.enabled -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") .Values.sync.fromHost.secrets.enabled) -}}true{{- end -}}
{{- end -}}
