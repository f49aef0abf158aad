{{- define "vcs.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "vcs.labels" -}}
app.kubernetes.io/name: vcluster-spawner
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "vcs.hubNamespace" -}}
{{- .Values.hub.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "vcs.saNamespace" -}}
{{- .Values.hub.serviceAccount.namespace | default .Release.Namespace -}}
{{- end -}}

{{- /*
Objects kept in every user's namespace, as the spawner's user_namespace_objects (a list of
manifests; {namespace}, {vcluster}, {username}, {external_host} are filled in per user).
*/ -}}
{{- define "vcs.namespaceObjects" -}}
{{- $objects := list -}}
{{- $np := .Values.networkPolicy -}}
{{- $hubNs := include "vcs.hubNamespace" . -}}
{{- $hubPods := dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $hubNs)) "podSelector" (dict "matchLabels" .Values.hub.podLabels) -}}
{{- $proxyPods := dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $hubNs)) "podSelector" (dict "matchLabels" .Values.hub.proxyPodLabels) -}}
{{- $synced := dict "vcluster.loft.sh/managed-by" "{vcluster}" -}}
{{- $notebooks := dict "component" "singleuser-server" "vcluster.loft.sh/managed-by" "{vcluster}" -}}
{{- $controlPlane := dict "app" "vcluster" "release" "{vcluster}" -}}
{{- if $np.enabled -}}
{{- /* 1. nothing reaches a pod of this namespace except from this namespace (other users' namespaces included) */ -}}
{{- $objects = append $objects (dict "apiVersion" "networking.k8s.io/v1" "kind" "NetworkPolicy"
      "metadata" (dict "name" "vcluster-spawner-same-namespace")
      "spec" (dict "podSelector" dict "policyTypes" (list "Ingress")
                   "ingress" (list (dict "from" (list (dict "podSelector" dict)))))) -}}
{{- /* 2. the proxy (and the hub's own checks) reach notebook servers on their port */ -}}
{{- $objects = append $objects (dict "apiVersion" "networking.k8s.io/v1" "kind" "NetworkPolicy"
      "metadata" (dict "name" "vcluster-spawner-notebooks-from-hub")
      "spec" (dict "podSelector" (dict "matchLabels" $notebooks) "policyTypes" (list "Ingress")
                   "ingress" (list (dict "from" (list $proxyPods $hubPods)
                                         "ports" (list (dict "protocol" "TCP" "port" (int $np.notebookPort))))))) -}}
{{- /* 3. the hub (and the passthrough route's controller) reach the vCluster API */ -}}
{{- $apiFrom := list $hubPods -}}
{{- if and .Values.routes.kind .Values.routes.controller.namespace -}}
{{- $ctl := dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Values.routes.controller.namespace)) -}}
{{- if .Values.routes.controller.podLabels -}}{{- $_ := set $ctl "podSelector" (dict "matchLabels" .Values.routes.controller.podLabels) -}}{{- end -}}
{{- $apiFrom = append $apiFrom $ctl -}}
{{- end -}}
{{- range $np.extraControlPlaneIngressFrom }}{{ $apiFrom = append $apiFrom . }}{{ end -}}
{{- $objects = append $objects (dict "apiVersion" "networking.k8s.io/v1" "kind" "NetworkPolicy"
      "metadata" (dict "name" "vcluster-spawner-api-from-hub")
      "spec" (dict "podSelector" (dict "matchLabels" $controlPlane) "policyTypes" (list "Ingress")
                   "ingress" (list (dict "from" $apiFrom
                                         "ports" (list (dict "protocol" "TCP" "port" (int $np.controlPlanePort))))))) -}}
{{- /* 4. workloads synced by the vCluster (notebooks included): this namespace, the hub API, DNS, the internet; not other users */ -}}
{{- $egress := list (dict "to" (list (dict "podSelector" dict))) (dict "to" (list $hubPods) "ports" (list (dict "protocol" "TCP" "port" (int .Values.hub.apiPort)))) -}}
{{- if $np.egress.dns -}}
{{- $egress = append $egress (dict "ports" (list (dict "protocol" "UDP" "port" 53) (dict "protocol" "TCP" "port" 53))) -}}
{{- end -}}
{{- if $np.egress.publicInternet -}}
{{- $egress = append $egress (dict "to" (list (dict "ipBlock" (dict "cidr" "0.0.0.0/0" "except" $np.egress.privateRanges)))) -}}
{{- end -}}
{{- range $np.egress.extraRules }}{{ $egress = append $egress . }}{{ end -}}
{{- $objects = append $objects (dict "apiVersion" "networking.k8s.io/v1" "kind" "NetworkPolicy"
      "metadata" (dict "name" "vcluster-spawner-workload-egress")
      "spec" (dict "podSelector" (dict "matchLabels" $synced) "policyTypes" (list "Egress") "egress" $egress)) -}}
{{- end -}}
{{- $kind := .Values.routes.kind -}}
{{- if eq $kind "ingress-nginx" -}}
{{- $objects = append $objects (dict "apiVersion" "networking.k8s.io/v1" "kind" "Ingress"
      "metadata" (dict "name" "vcluster-api" "annotations" (dict "nginx.ingress.kubernetes.io/ssl-passthrough" "true" "nginx.ingress.kubernetes.io/backend-protocol" "HTTPS"))
      "spec" (dict "ingressClassName" .Values.routes.ingressClassName
                   "rules" (list (dict "host" "{external_host}" "http" (dict "paths" (list (dict "path" "/" "pathType" "Prefix" "backend" (dict "service" (dict "name" "{vcluster}" "port" (dict "number" 443)))))))))) -}}
{{- else if eq $kind "traefik" -}}
{{- $objects = append $objects (dict "apiVersion" "traefik.io/v1alpha1" "kind" "IngressRouteTCP"
      "metadata" (dict "name" "vcluster-api")
      "spec" (dict "entryPoints" .Values.routes.traefikEntryPoints
                   "routes" (list (dict "match" "HostSNI(`{external_host}`)" "services" (list (dict "name" "{vcluster}" "port" 443))))
                   "tls" (dict "passthrough" true))) -}}
{{- else if eq $kind "apisix" -}}
{{- $objects = append $objects (dict "apiVersion" "apisix.apache.org/v2" "kind" "ApisixRoute"
      "metadata" (dict "name" "vcluster-api")
      "spec" (dict "ingressClassName" .Values.routes.apisixIngressClassName
                   "stream" (list (dict "name" "vcluster-api" "protocol" "TCP"
                                        "match" (dict "ingressPort" (int .Values.routes.apisixIngressPort) "host" "{external_host}")
                                        "backend" (dict "serviceName" "{vcluster}" "servicePort" 443))))) -}}
{{- end -}}
{{- toJson $objects -}}
{{- end -}}

{{- /* Settings read by files/chart_settings.py (a JSON object of VClusterSpawner traits) */ -}}
{{- define "vcs.settings" -}}
{{- $s := .Values.spawner -}}
{{- $traits := dict "vcluster_mode" $s.vclusterMode "home_size" $s.homeSize
      "home_storage_class" $s.homeStorageClass "external_api_host_template" $s.externalApiHostTemplate
      "vcluster_chart" $s.vclusterChart "vcluster_chart_repo" $s.vclusterChartRepo
      "vcluster_chart_version" $s.vclusterChartVersion
      "user_namespace_objects" (include "vcs.namespaceObjects" . | fromJsonArray) -}}
{{- $_ := set $traits "hub_connect_url" $s.hubConnectUrl -}}
{{- $_ := set $traits "pod_security_level" $s.podSecurityLevel -}}
{{- if .Values.rbac.create -}}
{{- $_ := set $traits "hub_namespace_role" (printf "%s-hub-namespace" (include "vcs.name" .)) -}}
{{- $_ := set $traits "hub_service_account" (printf "%s/%s" (include "vcs.saNamespace" .) .Values.hub.serviceAccount.name) -}}
{{- end -}}
{{- if $s.stopAction }}{{ $_ := set $traits "stop_action" $s.stopAction }}{{ end -}}
{{- toPrettyJson $traits -}}
{{- end -}}
